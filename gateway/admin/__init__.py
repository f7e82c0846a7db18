"""The admin process: approvals JSON API, reviewer web page, health checks, outgoing webhook, and the CLI.

Modules: `config` (the `admin` YAML section), `http` (sans-IO HTTP/1.1 framing), `api` (routes), `views` (JSON
and chat shapes of approval records), `webhook` (background delivery), `server` (`run_admin`, the process
entry the supervisor starts with the "admin" listener), `cli` (`streamgate approvals ...`), `static/` (the
page). Kept import-light on purpose: `gateway.config` may import `gateway.admin.config` without pulling in the
server.
"""
