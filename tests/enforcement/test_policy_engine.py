"""The policy engine as a table of questions and answers: who may do what on which resource, and why."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.enforcement.decisions import ACTIONS, Resource
from gateway.enforcement.policy import (
    NamePatterns,
    Policy,
    PolicyError,
    parse_duration,
    parse_rules,
)


@dataclass(frozen=True)
class Who:
    sub: str
    groups: tuple[str, ...] = ()


# The policy from DESIGN.md "Configuration at a glance", plus a deny and a subject rule.
DESIGN_RULES = [
    {
        "name": "payments-writers",
        "groups": ["payments-svc"],
        "topics": ["payments.*"],
        "allow": ["produce", "describe"],
    },
    {
        "name": "analysts-read-masked",
        "groups": ["analysts"],
        "topics": ["payments.*"],
        "allow": ["consume", "describe"],
        "consumer_groups": ["analytics-*"],
        "mask": "pii",
    },
    {
        "name": "customer-pii-needs-approval",
        "groups": ["analysts"],
        "topics": ["customers.pii.*"],
        "allow": ["consume", "describe"],
        "consumer_groups": ["*"],
        "approval": {"reviewers": ["security-oncall"], "grant_ttl": "1h", "hold": "20s"},
    },
    {
        "name": "no-secrets",
        "groups": ["analysts", "payments-svc"],
        "topics": ["payments.secrets"],
        "deny": ["consume", "produce"],
    },
    {
        "name": "erin-audit",
        "subjects": ["erin"],
        "topics": ["audit"],
        "allow": ["consume"],
        "consumer_groups": ["erin-?"],
    },
]


@pytest.fixture
def policy() -> Policy:
    return Policy.from_config(DESIGN_RULES)


ALICE = Who("alice", ("analysts",))
PAYMENTS = Who("payments-app", ("payments-svc",))
DAVE = Who("dave", ("analysts", "payments-svc"))
ERIN = Who("erin", ("contractors",))
NOBODY = Who("mallory", ("interns",))


def test_glob_matches_topics_under_the_prefix_only(policy: Policy) -> None:
    assert policy.decide(PAYMENTS, "produce", Resource.topic("payments.eu")).allowed
    assert policy.decide(PAYMENTS, "produce", Resource.topic("payments.eu.cards")).allowed
    # "payments.*" requires the dot; a sibling prefix and the bare name do not match.
    assert not policy.decide(PAYMENTS, "produce", Resource.topic("paymentsX")).allowed
    assert not policy.decide(PAYMENTS, "produce", Resource.topic("payments")).allowed
    assert not policy.decide(PAYMENTS, "produce", Resource.topic("old.payments.eu")).allowed


def test_default_deny_names_no_rule(policy: Policy) -> None:
    decision = policy.decide(NOBODY, "consume", Resource.topic("payments.eu"))
    assert not decision.allowed
    assert decision.rule is None
    assert "default deny" in decision.reason
    # An action the principal's rule does not list is denied too.
    assert not policy.decide(ALICE, "produce", Resource.topic("payments.eu")).allowed


def test_allow_names_the_rule_and_carries_the_mask(policy: Policy) -> None:
    decision = policy.decide(ALICE, "consume", Resource.topic("payments.eu"))
    assert decision.allowed
    assert decision.rule == "analysts-read-masked"
    assert decision.masks == ("pii",)
    assert decision.approval is None
    assert "analysts-read-masked" in decision.reason


def test_explicit_deny_beats_allow_whatever_the_order(policy: Policy) -> None:
    decision = policy.decide(PAYMENTS, "produce", Resource.topic("payments.secrets"))
    assert not decision.allowed
    assert decision.rule == "no-secrets"
    # Deny is literal: the same rule does not deny describe, which payments-writers allows.
    assert policy.decide(PAYMENTS, "describe", Resource.topic("payments.secrets")).allowed
    # Moving the deny rule first or last changes nothing.
    reordered = Policy.from_config([DESIGN_RULES[3], *DESIGN_RULES[:3], DESIGN_RULES[4]])
    assert reordered.decide(PAYMENTS, "produce", Resource.topic("payments.secrets")).rule == "no-secrets"


def test_a_user_in_two_groups_gets_the_union_of_their_rights(policy: Policy) -> None:
    assert policy.decide(DAVE, "produce", Resource.topic("payments.eu")).rule == "payments-writers"
    consume = policy.decide(DAVE, "consume", Resource.topic("payments.eu"))
    assert consume.allowed and consume.rule == "analysts-read-masked"
    # Being in the unmasked writers group never unmasks data read through the analysts rule.
    assert consume.masks == ("pii",)
    # A deny reached through either group still wins.
    assert not policy.decide(DAVE, "consume", Resource.topic("payments.secrets")).allowed


def test_subject_rules_match_by_sub_not_group(policy: Policy) -> None:
    assert policy.decide(ERIN, "consume", Resource.topic("audit")).rule == "erin-audit"
    impostor = Who("erin2", ("erin",))  # a group called "erin" is not the subject erin
    assert not policy.decide(impostor, "consume", Resource.topic("audit")).allowed


def test_consumer_group_patterns(policy: Policy) -> None:
    assert policy.decide(ALICE, "consumer_group", Resource.group("analytics-daily")).allowed
    # analysts also have consumer_groups ["*"] through the approval rule, which needs no approval for groups.
    other = policy.decide(ALICE, "consumer_group", Resource.group("anything"))
    assert other.allowed and other.approval is None
    assert not policy.decide(PAYMENTS, "consumer_group", Resource.group("analytics-daily")).allowed
    # "?" is exactly one character.
    assert policy.decide(ERIN, "consumer_group", Resource.group("erin-1")).allowed
    assert not policy.decide(ERIN, "consumer_group", Resource.group("erin-12")).allowed
    # Using a group implies describing it (Kafka: READ implies DESCRIBE); deleting it is not implied.
    assert policy.decide(ERIN, "describe", Resource.group("erin-1")).allowed
    assert not policy.decide(ERIN, "delete", Resource.group("erin-1")).allowed


def test_group_ids_with_glob_like_characters_are_literal() -> None:
    patterns = NamePatterns(["team[1]", "a.b*"])
    assert patterns.matches("team[1]")
    assert not patterns.matches("team1")
    assert patterns.matches("a.b-anything")
    assert not patterns.matches("aXb")  # the dot is literal


def test_approval_required_only_when_no_plain_allow_matches(policy: Policy) -> None:
    held = policy.decide(ALICE, "consume", Resource.topic("customers.pii.eu"))
    assert held.allowed and held.needs_approval
    assert held.rule == "customer-pii-needs-approval"
    assert held.approval is not None
    assert held.approval.reviewers == ("security-oncall",)
    assert held.approval.grant_ttl_s == 3600.0 and held.approval.hold_s == 20.0
    # describe is not an approval action by default: metadata is not held.
    assert not policy.decide(ALICE, "describe", Resource.topic("customers.pii.eu")).needs_approval

    with_direct = Policy.from_config(
        [
            *DESIGN_RULES,
            {
                "name": "oncall-direct",
                "groups": ["security-oncall"],
                "topics": ["customers.*"],
                "allow": ["consume"],
            },
        ]
    )
    both = Who("sam", ("analysts", "security-oncall"))
    direct = with_direct.decide(both, "consume", Resource.topic("customers.pii.eu"))
    assert direct.allowed and direct.approval is None and direct.rule == "oncall-direct"


def test_masks_from_every_matching_allow_rule_are_listed() -> None:
    policy = Policy.from_config(
        [
            {"name": "a", "groups": ["g1"], "topics": ["t.*"], "allow": ["consume"], "mask": "pii"},
            {"name": "b", "groups": ["g2"], "topics": ["t.x"], "allow": ["consume"], "mask": "strict"},
            {"name": "c", "groups": ["g3"], "topics": ["t.x"], "allow": ["consume"]},
        ]
    )
    decision = policy.decide(Who("u", ("g3", "g2", "g1")), "consume", Resource.topic("t.x"))
    assert decision.allowed and decision.rule == "a"
    assert decision.masks == ("pii", "strict")
    assert policy.decide(Who("u", ("g3",)), "consume", Resource.topic("t.x")).masks == ()


def test_implications_follow_kafka() -> None:
    policy = Policy.from_config(
        [
            {
                "name": "w",
                "groups": ["w"],
                "topics": ["t"],
                "allow": ["produce"],
                "transactional_ids": ["tx-*"],
            },
            {"name": "cfg", "groups": ["ops"], "topics": ["*"], "allow": ["alter_configs"]},
            {"name": "cl", "groups": ["ops"], "subjects": [], "allow": ["cluster_alter"]},
        ]
    )
    writer, ops = Who("w1", ("w",)), Who("o1", ("ops",))
    assert policy.decide(writer, "describe", Resource.topic("t")).allowed
    assert not policy.decide(writer, "consume", Resource.topic("t")).allowed
    assert policy.decide(writer, "transactional_id", Resource.transactional_id("tx-1")).allowed
    assert not policy.decide(writer, "transactional_id", Resource.transactional_id("other")).allowed
    assert policy.decide(writer, "idempotent_write", Resource.cluster()).allowed
    assert not policy.decide(writer, "cluster_describe", Resource.cluster()).allowed
    assert policy.decide(ops, "describe_configs", Resource.topic("any")).allowed
    assert not policy.decide(ops, "describe", Resource.topic("any")).allowed
    assert policy.decide(ops, "cluster_describe", Resource.cluster()).allowed
    assert not policy.decide(ops, "idempotent_write", Resource.cluster()).allowed


def test_action_that_does_not_fit_the_resource_kind_is_denied() -> None:
    policy = Policy.from_config(
        [
            {
                "name": "all",
                "groups": ["*"],
                "topics": ["*"],
                "consumer_groups": ["*"],
                "allow": sorted(ACTIONS - {"transactional_id"}),
            }
        ]
    )
    decision = policy.decide(Who("x"), "produce", Resource.group("g"))
    assert not decision.allowed and "does not apply" in decision.reason
    assert not policy.decide(Who("x"), "launch_missiles", Resource.topic("t")).allowed


def test_star_group_means_any_authenticated_principal() -> None:
    policy = Policy.from_config(
        [{"name": "public-read", "groups": ["*"], "topics": ["public.*"], "allow": ["consume"]}]
    )
    assert policy.decide(Who("anyone"), "consume", Resource.topic("public.news")).allowed
    assert not policy.decide(Who("anyone"), "consume", Resource.topic("private")).allowed


def test_decisions_are_cached_per_groups_action_resource() -> None:
    policy = Policy.from_config(DESIGN_RULES[:4])  # no rule names subjects
    first = policy.decide(ALICE, "consume", Resource.topic("payments.eu"))
    again = policy.decide(Who("alice-twin", ("analysts",)), "consume", Resource.topic("payments.eu"))
    assert again is first  # members of the same groups share one cache entry
    assert policy.cache_info().hits == 1 and policy.cache_info().currsize == 1
    assert policy.decide(ALICE, "consume", Resource.topic("payments.us")) is not first


def test_subject_is_part_of_the_cache_key_when_rules_use_subjects(policy: Policy) -> None:
    # Same (empty-ish) groups, different subject: the cached answer for one must not leak to the other.
    assert policy.decide(Who("erin", ("contractors",)), "consume", Resource.topic("audit")).allowed
    assert not policy.decide(Who("frank", ("contractors",)), "consume", Resource.topic("audit")).allowed


def test_cache_is_bounded() -> None:
    policy = Policy.from_config(DESIGN_RULES, cache_size=8)
    for i in range(50):
        policy.decide(ALICE, "consume", Resource.topic(f"payments.{i}"))
    assert policy.cache_info().currsize == 8


def test_explain_lists_every_rule_and_the_decision(policy: Policy) -> None:
    lines = policy.explain(ALICE, "consume", Resource.topic("payments.eu"))
    assert lines[0].startswith("question: may subject 'alice' (groups: analysts) consume topic 'payments.eu'")
    rule_lines = [line for line in lines if line.startswith("rule ")]
    assert len(rule_lines) == len(DESIGN_RULES)
    by_rule = {line.split("'")[1]: line for line in rule_lines}
    assert "no match - principal is in none of groups [payments-svc]" in by_rule["payments-writers"]
    assert (
        "ALLOW - matched group 'analysts'; topic 'payments.eu' matches 'payments.*'"
        in by_rule["analysts-read-masked"]
    )
    assert "mask 'pii'" in by_rule["analysts-read-masked"]
    assert "matches none of topics [customers.pii.*]" in by_rule["customer-pii-needs-approval"]
    assert "matches none of topics [payments.secrets]" in by_rule["no-secrets"]
    assert "not one of subjects [erin]" in by_rule["erin-audit"]
    assert lines[-1].startswith("decision: ALLOW by rule 'analysts-read-masked' [masks: pii]")


def test_explain_deny_and_default(policy: Policy) -> None:
    denied = policy.explain(PAYMENTS, "produce", Resource.topic("payments.secrets"))
    assert any("DENY - matched group 'payments-svc'" in line and "deny [produce]" in line for line in denied)
    assert denied[-1].startswith("decision: DENY by rule 'no-secrets'")
    default = policy.explain(ALICE, "produce", Resource.topic("payments.eu"))
    assert any("produce is covered by neither allow [consume, describe]" in line for line in default)
    assert default[-1].startswith("decision: DENY by default (no rule matched)")
    held = policy.explain(ALICE, "consume", Resource.topic("customers.pii.x"))
    assert "needs approval by security-oncall (hold 20s, grant 3600s)" in held[-1]


@pytest.mark.parametrize(
    ("rules", "message"),
    [
        (
            [{"name": "x", "groups": ["g"], "topics": ["t"], "allow": ["read"]}],
            "policy.rules[0] ('x').allow: unknown action 'read'",
        ),
        ([{"name": "x", "topics": ["t"], "allow": ["consume"]}], "needs `groups` and/or `subjects`"),
        ([{"name": "x", "groups": ["g"], "topics": ["t"]}], "needs `allow` or `deny`"),
        ([{"name": "x", "groups": ["g"], "allow": ["produce"]}], "'produce' applies to nothing"),
        (
            [{"name": "x", "groups": ["g"], "topics": ["t"], "deny": ["consume"], "mask": "pii"}],
            "mask only makes sense",
        ),
        ([{"name": "x", "groups": ["team-*"], "topics": ["t"], "allow": ["consume"]}], "only exact names"),
        (
            [
                {"name": "x", "groups": ["g"], "topics": ["t"], "allow": ["consume"]},
                {"name": "x", "groups": ["h"], "topics": ["t"], "allow": ["consume"]},
            ],
            "duplicate rule name 'x'",
        ),
        (
            [
                {
                    "name": "x",
                    "groups": ["g"],
                    "topics": ["t"],
                    "allow": ["consume"],
                    "approval": {"reviewers": ["sec"], "grant_ttl": "soon"},
                }
            ],
            "policy.rules[0] ('x').approval.grant_ttl: not a duration",
        ),
        (
            [
                {
                    "name": "x",
                    "groups": ["g"],
                    "topics": ["t"],
                    "allow": ["consume"],
                    "approval": {"reviewers": []},
                }
            ],
            "approval.reviewers",
        ),
    ],
)
def test_invalid_rules_are_refused_with_their_path(rules: list[dict[str, object]], message: str) -> None:
    with pytest.raises(PolicyError) as info:
        Policy.from_config(rules)
    assert message in str(info.value)


def test_unknown_keys_are_errors_with_the_key_path() -> None:
    with pytest.raises(PolicyError) as info:
        parse_rules(
            [
                {"name": "ok", "groups": ["g"], "topics": ["t"], "allow": ["consume"]},
                {"name": "typo", "group": ["g"], "topics": ["t"], "allow": ["consume"]},
            ]
        )
    assert "policy.rules[1]" in str(info.value) and "group" in str(info.value)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("20s", 20.0),
        ("1h", 3600.0),
        ("1h30m", 5400.0),
        ("500ms", 0.5),
        ("2d", 172800.0),
        (45, 45.0),
        (" 5m ", 300.0),
    ],
)
def test_parse_duration(text: str | int, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["", "1x", "h", "-5s", "1h 30m", 0, True])
def test_parse_duration_rejects(bad: str | int) -> None:
    with pytest.raises(ValueError):
        parse_duration(bad)


_NAME = st.text(alphabet="abc.-_", min_size=0, max_size=8)


@settings(max_examples=200, deadline=None)
@given(pattern=st.text(alphabet="abc.*?", min_size=1, max_size=6), name=_NAME)
def test_glob_agrees_with_a_naive_matcher(pattern: str, name: str) -> None:
    def naive(p: str, s: str) -> bool:
        if not p:
            return not s
        if p[0] == "*":
            return any(naive(p[1:], s[i:]) for i in range(len(s) + 1))
        if not s:
            return False
        return (p[0] == "?" or p[0] == s[0]) and naive(p[1:], s[1:])

    assert NamePatterns([pattern]).matches(name) == naive(pattern, name)


def test_kafka_acl_vocabulary_on_every_resource_kind() -> None:
    """The questions gateway/protocols/kafka/authz.py asks, in Kafka's ACL terms."""
    policy = Policy.from_config(
        [
            {
                "name": "app",
                "groups": ["app"],
                "topics": ["orders"],
                "consumer_groups": ["orders-*"],
                "transactional_ids": ["orders-tx"],
                "allow": ["produce", "consume", "describe_configs"],
            },
            {"name": "admin", "groups": ["admin"], "allow": ["cluster_alter"]},
            {"name": "group-cfg", "groups": ["admin"], "consumer_groups": ["*"], "allow": ["alter_configs"]},
        ]
    )
    app, admin = Who("a", ("app",)), Who("root", ("admin",))
    cases = [
        (app, "consume", Resource.group("orders-1"), True),  # READ on the group
        (app, "consume", Resource.group("billing"), False),
        (app, "produce", Resource.transactional_id("orders-tx"), True),  # WRITE on the transactional id
        (app, "produce", Resource.transactional_id("other-tx"), False),
        (app, "describe_configs", Resource.topic("orders"), True),
        # A rule's actions apply to every kind it lists patterns for: it lists consumer_groups, so group configs too.
        (app, "describe_configs", Resource.group("orders-1"), True),
        (app, "describe_configs", Resource.group("billing"), False),
        # A topic rule never reaches broker-wide rights, whatever the action is called.
        (app, "describe", Resource.cluster(), False),
        (app, "describe_configs", Resource.cluster(), False),
        (app, "alter", Resource.cluster(), False),
        (admin, "describe", Resource.cluster(), True),  # cluster_alter implies cluster describe
        (admin, "alter", Resource.cluster(), True),
        (admin, "alter_configs", Resource.cluster(), True),
        (admin, "describe_configs", Resource.group("g"), True),  # alter_configs implies describe_configs
        (admin, "consume", Resource.topic("orders"), False),
    ]
    for who, action, resource, allowed in cases:
        decision = policy.decide(who, action, resource)
        assert decision.allowed is allowed, (who.sub, action, resource, decision.reason)
        assert "does not apply" not in decision.reason


def test_requestable_pairs_cover_the_kafka_guard_vocabulary() -> None:
    from gateway.enforcement.policy import REQUESTABLE

    kafka_acl = {
        "produce",
        "consume",
        "describe",
        "create",
        "delete",
        "alter",
        "describe_configs",
        "alter_configs",
    }
    assert {("topic", a) for a in kafka_acl} <= REQUESTABLE
    assert {
        ("group", "consume"),
        ("group", "describe"),
        ("group", "delete"),
        ("group", "describe_configs"),
        ("group", "alter_configs"),
    } <= REQUESTABLE
    assert {("transactional_id", "produce"), ("transactional_id", "describe")} <= REQUESTABLE
    assert {
        ("cluster", "describe"),
        ("cluster", "alter"),
        ("cluster", "describe_configs"),
        ("cluster", "alter_configs"),
    } <= REQUESTABLE
    assert ("group", "produce") not in REQUESTABLE


def test_deny_in_kafka_terms() -> None:
    policy = Policy.from_config(
        [
            {
                "name": "app",
                "groups": ["app"],
                "topics": ["*"],
                "consumer_groups": ["*"],
                "transactional_ids": ["*"],
                "allow": ["produce", "consume"],
            },
            {
                "name": "no-legacy",
                "groups": ["app"],
                "consumer_groups": ["legacy-*"],
                "transactional_ids": ["legacy-*"],
                "deny": ["consume", "produce"],
            },
        ]
    )
    app = Who("a", ("app",))
    assert policy.decide(app, "consume", Resource.group("new")).allowed
    assert policy.decide(app, "consume", Resource.group("legacy-1")).rule == "no-legacy"
    assert not policy.decide(app, "produce", Resource.transactional_id("legacy-tx")).allowed
    assert policy.decide(app, "produce", Resource.transactional_id("tx")).allowed
