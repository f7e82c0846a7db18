"""The gateway's configuration: one YAML file decoded into msgspec Structs.

Rules this module keeps:
- unknown keys are errors, and every error names the key path (`kafka.upstream.bootstrap: ...`);
- `${env:NAME}` and `${file:PATH}` are substituted inside string values (for secrets), before validation;
- any key can be overridden from the environment as `STREAMGATE__SECTION__KEY` (values parsed as YAML scalars),
  and `STREAMGATE_WORKERS` sets `server.workers`;
- error messages never echo a substituted value (it may be a secret).

Every key is documented in docs/configuration.md.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import msgspec
import yaml

from gateway.admin.config import AdminConfig
from gateway.audit.config import AuditConfig
from gateway.enforcement.limits import LimitsConfig, LimitsError, compile_limits
from gateway.enforcement.policy import Policy, PolicyError, PolicyRule
from gateway.masking.detectors import BUILTIN_DETECTORS
from gateway.masking.registry import MaskingConfig
from gateway.netaddr import is_loopback_host, parse_host_port
from gateway.protocols.kafka.apis import BY_NAME as HANDLED_BY_NAME
from gateway.protocols.kafka.apis import DEFAULT_MAX_VERSIONS


class ConfigError(ValueError):
    """A configuration problem; `str()` is a list of `key.path: problem` lines, free of secret values."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def _check_host_port(field: str, value: str) -> None:
    try:
        parse_host_port(value)
    except ValueError as exc:
        raise ValueError(f"{field}: {exc}") from None


class ServerTls(msgspec.Struct, forbid_unknown_fields=True):
    """TLS towards clients (server side)."""

    cert: str
    key: str
    client_ca: str | None = None  # when set, clients must present a certificate signed by it (mTLS)

    def __post_init__(self) -> None:
        for name in ("cert", "key", "client_ca"):
            path = getattr(self, name)
            if path is not None and not Path(path).is_file():
                raise ValueError(f"{name}: file not found: {path}")


class UpstreamTls(msgspec.Struct, forbid_unknown_fields=True):
    """TLS towards the broker; `cert`/`key` enable mTLS."""

    ca: str | None = None  # None: the system trust store
    cert: str | None = None
    key: str | None = None
    server_name: str | None = None  # SNI / hostname to verify; default: the host being connected to
    verify: bool = True

    def __post_init__(self) -> None:
        for name in ("ca", "cert", "key"):
            path = getattr(self, name)
            if path is not None and not Path(path).is_file():
                raise ValueError(f"{name}: file not found: {path}")
        if (self.cert is None) != (self.key is None):
            raise ValueError("cert: `cert` and `key` must be given together for mTLS")


class UpstreamSasl(msgspec.Struct, forbid_unknown_fields=True):
    """The gateway's own broker credentials. Never logged, never sent to clients."""

    mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]
    username: str
    password: str

    def __repr__(self) -> str:  # keep the password out of any accidental repr in logs or tracebacks
        return f"UpstreamSasl(mechanism={self.mechanism!r}, username={self.username!r}, password=<redacted>)"


class Upstream(msgspec.Struct, forbid_unknown_fields=True):
    bootstrap: str = "127.0.0.1:19092"
    tls: UpstreamTls | None = None
    sasl: UpstreamSasl | None = None
    connect_timeout: float = 10.0

    def __post_init__(self) -> None:
        _check_host_port("bootstrap", self.bootstrap)
        if self.connect_timeout <= 0:
            raise ValueError("connect_timeout: must be > 0")


class KafkaConfig(msgspec.Struct, forbid_unknown_fields=True):
    listen: str = "127.0.0.1:9092"
    advertised_host: str | None = None  # default: the host of `listen` (or 127.0.0.1 when that is 0.0.0.0)
    node_port_base: int = 9100
    tls: ServerTls | None = None
    upstream: Upstream = msgspec.field(default_factory=Upstream)
    max_frame_bytes: int = 104_857_600  # larger request/response frames are refused as malformed
    # API name -> highest version advertised to clients (see apis.DEFAULT_MAX_VERSIONS for why Fetch is 15)
    max_api_versions: dict[str, int] = msgspec.field(default_factory=lambda: dict(DEFAULT_MAX_VERSIONS))

    def __post_init__(self) -> None:
        _check_host_port("listen", self.listen)
        by_lower = {n.lower(): n for n in HANDLED_BY_NAME}
        caps: dict[str, int] = {}
        for name, version in self.max_api_versions.items():
            spec = HANDLED_BY_NAME.get(by_lower.get(name.lower(), name))
            if spec is None:
                raise ValueError(f"max_api_versions: unknown API {name!r}; known: {', '.join(sorted(HANDLED_BY_NAME))}")
            if not spec.min_version <= version:
                raise ValueError(f"max_api_versions: {name} must be >= {spec.min_version}, got {version}")
            caps[spec.name] = version  # names are case-insensitive (environment overrides are lower case)
        self.max_api_versions = caps
        if not 1024 <= self.node_port_base <= 65000:
            raise ValueError(f"node_port_base: must be between 1024 and 65000, got {self.node_port_base}")
        if not 1024 <= self.max_frame_bytes <= 1 << 30:
            raise ValueError("max_frame_bytes: must be between 1 KiB and 1 GiB")

    @property
    def version_caps(self) -> dict[int, int]:
        return {HANDLED_BY_NAME[name].key: v for name, v in self.max_api_versions.items()}

    @property
    def listen_host(self) -> str:
        return parse_host_port(self.listen)[0]

    @property
    def listen_port(self) -> int:
        return parse_host_port(self.listen)[1]

    @property
    def effective_advertised_host(self) -> str:
        if self.advertised_host:
            return self.advertised_host
        host = self.listen_host
        return "127.0.0.1" if host in ("0.0.0.0", "::", "") else host


class ServerConfig(msgspec.Struct, forbid_unknown_fields=True):
    workers: int | None = None  # default: CPU count; STREAMGATE_WORKERS overrides
    drain_timeout: float = 30.0  # SIGTERM: seconds to finish in-flight requests
    heartbeat_timeout: float = 30.0
    state_dir: str = ".streamgate-state"  # shared state of all workers (limit windows, approvals): SQLite files
    log_format: Literal["text", "json"] = "text"
    log_level: Literal["debug", "info", "warning", "error"] = "info"

    def __post_init__(self) -> None:
        if self.workers is not None and not 1 <= self.workers <= 256:
            raise ValueError(f"workers: must be between 1 and 256, got {self.workers}")
        if self.drain_timeout < 0:
            raise ValueError("drain_timeout: must be >= 0")


class OidcConfig(msgspec.Struct, forbid_unknown_fields=True):
    """Where tokens come from and how they are checked (see docs/identity.md)."""

    issuer: str
    audience: str | list[str]
    groups_claim: str = "groups"  # dotted path, e.g. realm_access.roles
    email_claim: str = "email"
    subject_claim: str = "sub"
    algorithms: list[str] = msgspec.field(
        default_factory=lambda: ["RS256", "RS384", "RS512", "PS256", "ES256", "ES384", "EdDSA"])
    clock_skew: float = 30.0  # seconds of tolerance on exp / nbf / iat
    jwks_refresh_interval: float = 300.0  # seconds between scheduled JWKS refreshes
    unknown_kid_refetch_interval: float = 30.0  # at most one JWKS refetch per this many seconds for an unknown kid
    ca_file: str | None = None  # CA bundle for an https issuer (default: system trust store)

    def __post_init__(self) -> None:
        if not self.issuer.startswith(("http://", "https://")):
            raise ValueError(f'issuer: expected an http(s) URL, got "{self.issuer}"')
        if self.ca_file is not None and not Path(self.ca_file).is_file():
            raise ValueError(f"ca_file: file not found: {self.ca_file}")
        bad = sorted({a for a in self.algorithms if a.upper().startswith("HS") or a.lower() == "none"})
        if bad:
            raise ValueError(f"algorithms: {', '.join(bad)} can never be accepted for OIDC tokens")


class IdentityConfig(msgspec.Struct, forbid_unknown_fields=True):
    oidc: OidcConfig
    mechanisms: list[Literal["OAUTHBEARER", "PLAIN"]] = msgspec.field(
        default_factory=lambda: ["OAUTHBEARER", "PLAIN"])

    def __post_init__(self) -> None:
        if not self.mechanisms:
            raise ValueError("mechanisms: at least one SASL mechanism must be enabled")


class PolicyConfig(msgspec.Struct, forbid_unknown_fields=True):
    rules: list[PolicyRule] = msgspec.field(default_factory=list)

    def __post_init__(self) -> None:
        try:
            Policy(self.rules)
        except PolicyError as exc:
            text = str(exc)
            if text.startswith("policy."):  # already a full key path
                raise ValueError(text.removeprefix("policy.")) from None
            raise ValueError(f"rules: {text}") from None


class Config(msgspec.Struct, forbid_unknown_fields=True):
    kafka: KafkaConfig = msgspec.field(default_factory=KafkaConfig)
    server: ServerConfig = msgspec.field(default_factory=ServerConfig)
    identity: IdentityConfig | None = None
    policy: PolicyConfig = msgspec.field(default_factory=PolicyConfig)
    audit: AuditConfig = msgspec.field(default_factory=AuditConfig)
    masking: MaskingConfig = msgspec.field(default_factory=MaskingConfig)
    limits: LimitsConfig = msgspec.field(default_factory=LimitsConfig)
    admin: AdminConfig = msgspec.field(default_factory=AdminConfig)
    # Passthrough: no identity, no policy. Refused unless every listener is on a loopback address;
    # exists for local testing and for measuring the proxy's own overhead.
    passthrough: bool = False

    def __post_init__(self) -> None:
        if self.passthrough:
            if self.identity is not None or self.policy.rules:
                raise ValueError("passthrough: cannot be combined with identity or policy rules")
            if not is_loopback_host(self.kafka.listen_host):
                raise ValueError(
                    f"passthrough: only allowed when every listener is on a loopback address "
                    f"(kafka.listen is {self.kafka.listen})"
                )
        elif self.identity is None:
            raise ValueError(
                "identity: required (clients authenticate with OIDC tokens); for local testing without identity "
                "set `passthrough: true` on a loopback listener"
            )
        elif not self.audit.sinks:
            raise ValueError("audit: at least one sink is required: every decision of the gateway is recorded")
        if self.passthrough and (self.limits.rules or self.limits.bulk_read or self.limits.content):
            raise ValueError("passthrough: cannot be combined with exfiltration limits")
        try:
            compile_limits(self.limits, known_detectors=BUILTIN_DETECTORS | set(self.masking.custom_detectors))
        except LimitsError as exc:
            text = str(exc)
            raise ValueError(text.removeprefix("limits.") if text.startswith("limits.") else f"limits: {text}") \
                from None
        for index, rule in enumerate(self.policy.rules):
            if rule.mask is not None and rule.mask not in self.masking.profiles:
                known = ", ".join(sorted(self.masking.profiles)) or "none defined"
                raise ValueError(f"policy: rules[{index}] ({rule.name!r}).mask: unknown masking profile "
                                 f"{rule.mask!r} (masking.profiles: {known})")

    @property
    def needs_approvals(self) -> bool:
        return any(rule.approval is not None for rule in self.policy.rules)

    @property
    def worker_count(self) -> int:
        return self.server.workers or os.cpu_count() or 1


# ---------------------------------------------------------------------------------------------------------
# loading

_SUBST = re.compile(r"\$\{(env|file):([^}]+)\}")


def _substitute(node: Any, path: str, problems: list[str], environ: Mapping[str, str]) -> Any:
    if isinstance(node, dict):
        return {k: _substitute(v, f"{path}.{k}" if path else str(k), problems, environ) for k, v in node.items()}
    if isinstance(node, list):
        return [_substitute(v, f"{path}[{i}]", problems, environ) for i, v in enumerate(node)]
    if isinstance(node, str) and "${" in node:

        def repl(m: re.Match[str]) -> str:
            kind, ref = m.group(1), m.group(2).strip()
            if kind == "env":
                if ref not in environ:
                    problems.append(f"{path}: environment variable {ref} is not set")
                    return ""
                return environ[ref]
            try:
                return Path(ref).read_text().rstrip("\n")
            except OSError as exc:
                problems.append(f"{path}: cannot read file {ref}: {exc.strerror}")
                return ""

        return _SUBST.sub(repl, node)
    return node


def _apply_env_overrides(raw: dict[str, Any], environ: Mapping[str, str], problems: list[str]) -> None:
    for name, value in sorted(environ.items()):
        if not name.startswith("STREAMGATE__"):
            continue
        keys = [k.lower() for k in name[len("STREAMGATE__") :].split("__") if k]
        if not keys:
            continue
        node = raw
        for k in keys[:-1]:
            child = node.get(k)
            if child is None:
                child = node[k] = {}
            if not isinstance(child, dict):
                problems.append(f"{'.'.join(keys)}: cannot override from {name}: {k} is not a section")
                break
            node = child
        else:
            try:
                node[keys[-1]] = yaml.safe_load(value) if value != "" else ""
            except yaml.YAMLError:
                node[keys[-1]] = value
    workers = environ.get("STREAMGATE_WORKERS")
    if workers:
        try:
            raw.setdefault("server", {})["workers"] = int(workers)
        except ValueError:
            problems.append(f'server.workers: STREAMGATE_WORKERS must be an integer, got "{workers}"')


_AT = re.compile(r"^(?P<msg>.*) - at `\$(?P<path>[^`]*)`$", re.S)


def _format_validation_error(exc: msgspec.ValidationError) -> str:
    text = str(exc)
    m = _AT.match(text)
    if not m:
        return text
    path = m.group("path").lstrip(".")
    msg = m.group("msg")
    unknown = re.match(r"Object contains unknown field `([^`]+)`", msg)
    if unknown:
        return f"{path + '.' if path else ''}{unknown.group(1)}: unknown key"
    field_first = re.match(r"^([A-Za-z_][A-Za-z0-9_]*): (.*)$", msg, re.S)
    if field_first:  # raised by a __post_init__ as "field: problem"
        return f"{path + '.' if path else ''}{field_first.group(1)}: {field_first.group(2)}"
    msg = msg[0].lower() + msg[1:] if msg else msg
    return f"{path or '(top level)'}: {msg.replace('`', '')}"


def load_raw(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read the YAML file into plain data (no substitution, no overrides)."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read config file: {exc.strerror}"]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise ConfigError([f"{path}: invalid YAML{where}: {getattr(exc, 'problem', exc)}"]) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError([f"{path}: the top level must be a mapping of sections, got {type(data).__name__}"])
    return data


def resolve(raw: dict[str, Any], environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Apply environment overrides and `${...}` substitution; return the resolved plain data."""
    environ = os.environ if environ is None else environ
    problems: list[str] = []
    raw = _deepcopy(raw)
    _apply_env_overrides(raw, environ, problems)
    resolved = _substitute(raw, "", problems, environ)
    if problems:
        raise ConfigError(problems)
    return resolved


def validate(resolved: Mapping[str, Any]) -> Config:
    try:
        return msgspec.convert(resolved, Config, str_keys=True)
    except msgspec.ValidationError as exc:
        raise ConfigError([_format_validation_error(exc)]) from None


def load_config(path: str | os.PathLike[str], environ: Mapping[str, str] | None = None) -> Config:
    """Read, resolve and validate; raise ConfigError naming the key path of the first problem found."""
    return validate(resolve(load_raw(path), environ))


def to_plain(config: Config) -> dict[str, Any]:
    """The validated config as JSON-able data (what the supervisor hands to workers). Contains secrets."""
    return msgspec.to_builtins(config)


def from_plain(data: Mapping[str, Any]) -> Config:
    return msgspec.convert(data, Config, str_keys=True)


def _deepcopy(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _deepcopy(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_deepcopy(v) for v in node]
    return node
