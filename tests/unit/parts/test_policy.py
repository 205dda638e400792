"""Part 1: policy lookup, with podman's texts."""

from __future__ import annotations

import pytest

from autoupdated.model import ContainerInfo, Policy
from autoupdated.parts.policy import PolicyError, lookup_policy, unit_for


def test_policy_lookup_texts():
    assert lookup_policy("image") is Policy.REGISTRY
    assert lookup_policy("") is Policy.DISABLED
    with pytest.raises(PolicyError) as err:
        lookup_policy("Registry")
    assert (
        str(err.value)
        == 'invalid auto-update policy "Registry": valid policies are ["disabled" "image" "local" "registry"]'
    )


def test_unit_for_pod_uses_infra_label_only():
    c = ContainerInfo("id", "n", "img", "quay.io/a:1", {"PODMAN_SYSTEMD_UNIT": "container-n.service"}, pod_id="p")
    assert unit_for(c, {"PODMAN_SYSTEMD_UNIT": "pod-p.service"}) == "pod-p.service"
    assert unit_for(c, {}) is None
