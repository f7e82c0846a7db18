from hypothesis import given, settings, event, HealthCheck
from tests.masking.test_differential import profiles, batches, _engines
@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(profiles(), batches)
def test_stats(profile, batch):
    native, reference = _engines(*profile)
    out, counts = native.mask_values(batch)
    changed = sum(1 for a, b in zip(batch, out) if a is not None and a != b)
    event(f"changed records: {min(changed, 3)}")
    event("has field counts" if any(k.startswith("field:") for k in counts) else "no field counts")
    event("has detector counts" if any(not k.startswith("field:") for k in counts) else "no detector counts")
    event("custom regex" if "custom_re" in profile[1] else "no custom regex")
    assert out == reference.mask_values(batch)[0]
