"""Label policies: taxonomy families and class ids."""

import numpy as np
import pytest

from stfe_jax.labels.policy import (
    TAXONOMY_FAMILIES,
    LabelPolicy,
    assign_classes,
    taxonomy_family,
)

# Every taxonomy code in the two real MAWILab CSVs, and its family by hand.
REAL_CODES = {
    "ntscSYN": "scan", "sntscSYN": "scan", "ntscSYN139445": "scan",
    "ntscUDPOther": "scan", "ntscUDPUDPrp": "scan", "ntscUDPUDPICrp": "scan",
    "ntscICec": "scan", "ntscICecrqICecrprp": "scan", "ntscTCPRSTACKrp": "scan",
    "poscaSYN": "scan",
    "DDoSUDP": "dos_flood", "DDoSSYN": "dos_flood", "ptpDoSSYN": "dos_flood",
    "rflatNTP": "dos_flood",
    "alphfl": "alpha_heavy_hitter", "alphflHTTP": "alpha_heavy_hitter",
    "salphfl": "alpha_heavy_hitter", "malphfl": "alpha_heavy_hitter",
    "heavy_hitter": "alpha_heavy_hitter",
    "ipv4gretun": "tunnel",
    "mptmp": "other", "mptp": "other", "mptpHTTP": "other", "mptpla": "other",
    "mptplaHTTP": "other", "ptmp": "other", "ptmpHTTP": "other", "ptmpla": "other",
    "point_to_point": "other", "icmp_error": "other", "empty": "other",
}  # fmt: skip


def test_taxonomy_families_of_real_codes():
    assert {code: taxonomy_family(code) for code in REAL_CODES} == REAL_CODES
    # Long names as on MAWILab's pages; unknown and missing codes are "other".
    assert taxonomy_family("network_scan_SYN_t") == "scan"
    assert taxonomy_family("point_to_point_port_scan_UDP") == "scan"
    assert taxonomy_family("ipv4_ipv6_tunnel") == "tunnel"
    assert taxonomy_family("reflection_attack_DNS") == "dos_flood"
    assert taxonomy_family("somethingnew") == "other"
    assert taxonomy_family(None) == "other"
    assert all(family in {"scan", "dos_flood", "alpha_heavy_hitter", "tunnel", "other"}
               for family, _ in TAXONOMY_FAMILIES.values())  # fmt: skip


NAMES = np.array(["normal", "scan", "other", "", "scan", "tunnel"])
SUSPICIOUS = np.array([False, False, True, False, True, False])


@pytest.mark.parametrize(
    ("policy", "suspicious", "names", "ids"),
    [
        ("binary", "anomalous", ["normal", "anomalous"], [0, 1, 1, -1, 1, 1]),
        ("binary", "drop", ["normal", "anomalous"], [0, 1, -1, -1, -1, 1]),
        (
            "binary",
            "separate",
            ["normal", "anomalous", "suspicious"],
            [0, 1, 2, -1, 2, 1],
        ),
        (
            "family",
            "anomalous",
            ["normal", "scan", "tunnel", "other"],
            [0, 1, 3, -1, 1, 2],
        ),
        (
            "family",
            "drop",
            ["normal", "scan", "tunnel", "other"],
            [0, 1, -1, -1, -1, 2],
        ),
        (
            "family",
            "separate",
            ["normal", "scan", "tunnel", "suspicious"],
            [0, 1, 3, -1, 3, 2],
        ),
    ],
)
def test_assign_classes(policy, suspicious, names, ids):
    class_id, class_names = assign_classes(
        LabelPolicy(policy, suspicious), NAMES, SUSPICIOUS
    )
    assert class_names == names
    assert class_id.tolist() == ids
    assert class_id.dtype == np.int32


def test_bad_policy_names():
    with pytest.raises(ValueError, match="labels.policy"):
        LabelPolicy("ternary")
    with pytest.raises(ValueError, match="labels.suspicious"):
        LabelPolicy("binary", "maybe")
