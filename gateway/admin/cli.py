"""`streamgate approvals list|show|approve|deny|revoke`: the approvals API from a terminal.

    streamgate approvals list [--status pending|approved|...|all] [--limit N] [--json]
    streamgate approvals show ID [--json]
    streamgate approvals approve ID --reason TEXT
    streamgate approvals deny ID --reason TEXT
    streamgate approvals revoke ID --reason TEXT

Every sub-command takes `--admin URL` (default `$STREAMGATE_ADMIN_URL`, else http://127.0.0.1:8080) and the
reviewer's OIDC access token from `--token-file PATH`, `$STREAMGATE_TOKEN` or `--token TOKEN` (the last is
visible to other users in the process list; prefer the first two). Exit status: 0 done, 1 the API refused
(the message says why: not a reviewer, own request, already decided...), 2 usage or connection problem.

Rule kept here: the token is sent only in the Authorization header to the admin URL given, never printed,
and the connection ignores proxy environment variables (a reviewer's token does not detour via a proxy).
"""

from __future__ import annotations

import argparse
import json
import os
import ssl
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import quote, urlsplit

DEFAULT_ADMIN_URL = "http://127.0.0.1:8080"
STATUS_CHOICES = ("pending", "approved", "denied", "revoked", "expired", "all")


class AdminApiError(Exception):
    """The admin API answered with an error status (`status`), or could not be reached (`status` 0)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class AdminClient:
    """A small synchronous client of the admin approvals API."""

    def __init__(
        self, base_url: str, token: str, *, ca_file: str | None = None, timeout_s: float = 10.0
    ) -> None:
        if urlsplit(base_url).scheme not in ("http", "https"):
            raise ValueError(f"--admin must be an http(s) URL, got {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self._token = token
        self.timeout_s = timeout_s
        handlers: list[urllib.request.BaseHandler] = [urllib.request.ProxyHandler({})]
        if ca_file:
            handlers.append(urllib.request.HTTPSHandler(context=ssl.create_default_context(cafile=ca_file)))
        self._opener = urllib.request.build_opener(*handlers)

    def request(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        headers = {"Authorization": f"Bearer {self._token}", "Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(self.base_url + path, data=data, headers=headers, method=method)
        try:
            with self._opener.open(request, timeout=self.timeout_s) as response:
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            with exc:
                try:
                    answer = json.loads(exc.read() or b"null")
                    message = answer.get("message") if isinstance(answer, dict) else None
                except ValueError:
                    message = None
            raise AdminApiError(exc.code, message or f"HTTP {exc.code}") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise AdminApiError(0, f"cannot reach the admin API at {self.base_url}: {reason}") from None

    def list_requests(self, status: str = "pending", limit: int = 100) -> list[dict[str, Any]]:
        return list(self.request("GET", f"/api/approvals?status={quote(status)}&limit={limit}")["approvals"])

    def get(self, request_id: str) -> dict[str, Any]:
        return dict(self.request("GET", f"/api/approvals/{quote(request_id, safe='')}"))

    def decide(self, request_id: str, verb: str, reason: str) -> dict[str, Any]:
        if verb not in ("approve", "deny", "revoke"):
            raise ValueError(f"unknown decision {verb!r}")
        return dict(
            self.request("POST", f"/api/approvals/{quote(request_id, safe='')}/{verb}", {"reason": reason})
        )


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add `approvals` to the `streamgate` command's sub-parsers; its sub-commands call `run(args)`."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--admin",
        default=None,
        metavar="URL",
        help=f"admin API base URL (default $STREAMGATE_ADMIN_URL or {DEFAULT_ADMIN_URL})",
    )
    common.add_argument(
        "--token",
        default=None,
        help="reviewer OIDC access token (prefer --token-file or "
        "$STREAMGATE_TOKEN: arguments are visible in ps)",
    )
    common.add_argument("--token-file", default=None, metavar="PATH", help="file holding the access token")
    common.add_argument("--ca-file", default=None, metavar="PATH", help="CA bundle for an https admin URL")
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "approvals", help="list and decide approval requests through the admin API"
    )
    commands = parser.add_subparsers(dest="approvals_command", required=True)
    p = commands.add_parser("list", parents=[common], help="list approval requests (default: pending)")
    p.add_argument(
        "--status", default="pending", help=f"one of {', '.join(STATUS_CHOICES)}, or several comma-separated"
    )
    p.add_argument("--limit", type=int, default=100)
    p.add_argument("--json", action="store_true", help="print the API's JSON")
    p.add_argument("--ids-only", action="store_true", help="print only the request ids, one per line")
    p.set_defaults(func=run)
    p = commands.add_parser("show", parents=[common], help="show one request")
    p.add_argument("id")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)
    for verb, text in (
        ("approve", "grant the request"),
        ("deny", "refuse the request"),
        ("revoke", "end an active grant"),
    ):
        p = commands.add_parser(verb, parents=[common], help=text)
        p.add_argument("id")
        p.add_argument("--reason", "-r", required=True, help="why (recorded in the audit trail)")
        p.add_argument("--json", action="store_true")
        p.set_defaults(func=run)
    return parser


def _token(args: argparse.Namespace) -> str | None:
    if args.token_file:
        return Path(args.token_file).read_text(encoding="utf-8").strip() or None
    return os.environ.get("STREAMGATE_TOKEN") or args.token


def run(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    try:
        token = _token(args)
    except OSError as exc:
        print(f"error: cannot read the token file: {exc.strerror or exc}", file=err)
        return 2
    if not token:
        print("error: no token: give --token-file PATH, set STREAMGATE_TOKEN, or pass --token", file=err)
        return 2
    base_url = args.admin or os.environ.get("STREAMGATE_ADMIN_URL") or DEFAULT_ADMIN_URL
    try:
        client = AdminClient(base_url, token, ca_file=args.ca_file)
        command = args.approvals_command
        if command == "list":
            approvals = client.list_requests(args.status, args.limit)
            if args.ids_only:
                for approval in approvals:
                    print(approval["id"], file=out)
            elif args.json:
                print(json.dumps(approvals, indent=2), file=out)
            else:
                print_table(approvals, out)
        elif command == "show":
            record = client.get(args.id)
            print(json.dumps(record, indent=2) if args.json else format_record(record), file=out)
        else:
            record = client.decide(args.id, command, args.reason)
            if args.json:
                print(json.dumps(record, indent=2), file=out)
            else:
                print(
                    f"{record['id']}: {record['status']} by {record['decided_by']}"
                    + (f", grant until {record['grant_expires_at']}" if record.get("grant_active") else ""),
                    file=out,
                )
    except ValueError as exc:
        print(f"error: {exc}", file=err)
        return 2
    except AdminApiError as exc:
        print(f"error: {exc}", file=err)
        return 2 if exc.status == 0 else 1
    return 0


def print_table(approvals: list[dict[str, Any]], out: TextIO) -> None:
    if not approvals:
        print("no approval requests", file=out)
        return
    rows = [
        ("ID", "STATUS", "CREATED", "REQUESTER", "ACTION", "RESOURCE", "RULE", "DECIDED BY", "JUSTIFICATION")
    ]
    for a in approvals:
        justification = (a.get("justification") or "").replace("\n", " ")
        rows.append(
            (
                a["id"],
                a["status"],
                a["created_at"] or "",
                a["requester"]["sub"],
                a["action"],
                f"{a['resource']['kind']}:{a['resource']['name']}",
                a["rule"],
                a.get("decided_by") or "",
                justification[:40] + ("..." if len(justification) > 40 else ""),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        print(
            "  ".join(value.ljust(width) for value, width in zip(row, widths, strict=False)) + "  " + row[-1],
            file=out,
        )


def format_record(a: dict[str, Any]) -> str:
    lines = [
        f"request        {a['id']}",
        f"status         {a['status']}",
        f"requester      {a['requester']['sub']}"
        + (f" <{a['requester']['email']}>" if a["requester"].get("email") else ""),
        f"groups         {', '.join(a['requester']['groups'])}",
        f"wants          {a['action']} on {a['resource']['kind']} {a['resource']['name']}",
        f"rule           {a['rule']} (reviewers: {', '.join(a['reviewers'])})",
        f"client         {a['client'].get('client_id') or '-'} from {a['client'].get('address') or '-'}",
        f"justification  {a.get('justification') or '-'}",
        f"created        {a['created_at']}",
    ]
    if a.get("decided_by"):
        lines.append(f"decided        {a['decided_at']} by {a['decided_by']}: {a.get('reason') or ''}")
    if a.get("grant_expires_at"):
        lines.append(
            f"grant until    {a['grant_expires_at']}" + (" (active)" if a.get("grant_active") else "")
        )
    return "\n".join(lines)
