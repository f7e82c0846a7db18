"""The `streamgate` command.

    streamgate run --config PATH         start the supervisor and its workers
    streamgate check-config PATH         validate a config file; exit 0 if valid, 1 with key-path errors
    streamgate version                   print the version and which native extensions loaded
    streamgate policy explain ...        the decision for (subject, groups, action, resource) and why
    streamgate audit verify FILE...      check hash-chained audit files for edits, drops and reordering
    streamgate devstack                  the embedded local stack behind `make run`
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from gateway import __version__


def _cmd_check_config(args: argparse.Namespace) -> int:
    from gateway.config import ConfigError, load_config

    try:
        config = load_config(args.path)
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"error: {problem}", file=sys.stderr)
        return 1
    print(f"{args.path}: ok ({config.worker_count} workers, kafka listening on {config.kafka.listen}, "
          f"upstream {config.kafka.upstream.bootstrap})")
    return 0


def _cmd_version(_args: argparse.Namespace) -> int:
    from gateway import native

    line = f"streamgate {__version__} (native: {native.IMPLEMENTATION}"
    if native.NATIVE_LOAD_ERROR:
        line += f"; load error: {native.NATIVE_LOAD_ERROR}"
    print(line + ")")
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from gateway.config import ConfigError, load_config, to_plain
    from gateway.logsetup import configure_logging
    from gateway.supervisor import ListenerSpec, Supervisor

    try:
        config = load_config(args.config)
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"error: {problem}", file=sys.stderr)
        return 1
    configure_logging(config.server.log_format, config.server.log_level, worker_id=None)
    log = logging.getLogger("streamgate")
    if config.passthrough:
        log.warning("PASSTHROUGH MODE: no identity, no policy, no audit - every client may do anything the "
                    "broker allows. Loopback listeners only; for local testing and overhead measurement.")
    k = config.kafka

    def reload() -> dict[str, object]:
        return to_plain(load_config(args.config))

    auxiliary = []
    if not config.passthrough:  # the admin process: approvals API, reviewer page, health
        auxiliary.append(("gateway.admin.server:run_admin",
                          [ListenerSpec("admin", config.admin.listen_host, config.admin.listen_port)]))
    supervisor = Supervisor(
        auxiliary=auxiliary,
        listeners=[ListenerSpec("kafka", k.listen_host, k.listen_port)],
        workers=config.worker_count,
        worker_entry="gateway.worker.main:run_worker",
        load_config=reload,
        drain_timeout=config.server.drain_timeout,
        heartbeat_timeout=config.server.heartbeat_timeout,
        logger=log,
    )
    log.info("streamgate %s: kafka on %s (node ports from %d, advertised host %s) -> %s, %d workers",
             __version__, k.listen, k.node_port_base, k.effective_advertised_host, k.upstream.bootstrap,
             config.worker_count)
    return supervisor.run()


def _cmd_policy_explain(args: argparse.Namespace) -> int:
    from dataclasses import dataclass

    from gateway.config import ConfigError, load_config
    from gateway.enforcement.decisions import Resource
    from gateway.enforcement.policy import Policy

    try:
        config = load_config(args.config)
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"error: {problem}", file=sys.stderr)
        return 2

    @dataclass(frozen=True)
    class Who:
        sub: str
        groups: tuple[str, ...]

    kinds = [(k, v) for k, v in (("topic", args.topic), ("group", args.group),
                                 ("transactional_id", args.transactional_id)) if v]
    if len(kinds) > 1:
        print("error: name exactly one of --topic, --group, --transactional-id (or none for the cluster)",
              file=sys.stderr)
        return 2
    resource = Resource(kinds[0][0], kinds[0][1]) if kinds else Resource.cluster()  # type: ignore[arg-type]
    groups = tuple(g for g in (args.groups or "").split(",") if g)
    policy = Policy(config.policy.rules)
    for line in policy.explain(Who(args.sub, groups), args.action, resource):
        print(line)
    return 0 if policy.decide(Who(args.sub, groups), args.action, resource).allowed else 1


def _cmd_audit_verify(args: argparse.Namespace) -> int:
    from gateway.audit.verify import format_result, verify_files

    result = verify_files(args.paths)
    print(format_result(result))
    return 0 if result.ok else 1


def _cmd_devstack(args: argparse.Namespace) -> int:
    from gateway.devstack.stack import run_devstack

    return run_devstack(port=args.port, workers=args.workers, node_port_base=args.node_port_base)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="streamgate", description="Security gateway for Kafka and MQTT")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("run", help="start the gateway")
    p.add_argument("--config", "-c", required=True, help="YAML config file")
    p.set_defaults(func=_cmd_run)
    p = sub.add_parser("check-config", help="validate a config file (exit 0 valid, 1 invalid)")
    p.add_argument("path")
    p.set_defaults(func=_cmd_check_config)
    p = sub.add_parser("version", help="print the version")
    p.set_defaults(func=_cmd_version)
    p = sub.add_parser("policy", help="inspect the policy")
    policy_sub = p.add_subparsers(dest="policy_command", required=True)
    p = policy_sub.add_parser("explain", help="show the decision for one question and every rule considered "
                                              "(exit 0 allow, 1 deny, 2 error)")
    p.add_argument("--config", "-c", required=True)
    p.add_argument("--sub", required=True, help="token subject")
    p.add_argument("--groups", default="", help="comma-separated IdP groups")
    p.add_argument("--action", required=True, help="produce, consume, describe, create, delete, alter, ...")
    p.add_argument("--topic")
    p.add_argument("--group", help="consumer group id")
    p.add_argument("--transactional-id", dest="transactional_id")
    p.set_defaults(func=_cmd_policy_explain)
    p = sub.add_parser("audit", help="audit trail tools")
    audit_sub = p.add_subparsers(dest="audit_command", required=True)
    p = audit_sub.add_parser("verify", help="verify hash-chained audit files (exit 0 intact, 1 tampered)")
    p.add_argument("paths", nargs="+", help="audit files, directories or globs")
    p.set_defaults(func=_cmd_audit_verify)
    from gateway.admin.cli import add_parser as add_approvals_parser

    add_approvals_parser(sub)
    p = sub.add_parser("devstack", help="run the embedded local stack (broker + gateway) for trying it out")
    p.add_argument("--port", type=int, default=9092, help="gateway bootstrap port (default 9092)")
    p.add_argument("--workers", type=int, default=None)
    p.add_argument("--node-port-base", type=int, default=None, help="default: --port + 8")
    p.set_defaults(func=_cmd_devstack)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
