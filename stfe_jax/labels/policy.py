"""Label policies: from per-flow label names to class ids and class names.

Every label source reduces a flow to a label name (a MAWILab taxonomy family or
binary outcome, a CIC ``Label``, a capture's class) or to nothing. A policy turns
those names into integer class ids, class 0 always being the normal class:

- ``binary``: ``normal`` (0) versus ``anomalous`` (1). MAWILab's notice counts as
  normal (reported by a detector but judged normal). Suspicious flows are counted
  anomalous, dropped (class -1), or kept apart as a third class ``suspicious``
  (2), as ``labels.suspicious`` says. For the other sources every name that is not
  a normal name (``normal``, ``benign``) is anomalous.
- ``family``: one class per MAWILab taxonomy family (the ``FAMILIES`` order, from
  ``TAXONOMY_FAMILIES`` below), or, for the other sources, one class per distinct
  label name after ``normal``: names equal to a family first, in family order,
  then the others sorted. Suspicious is handled as in binary.

The mapping from MAWILab taxonomy codes to families is the one table below. The
codes and their meanings are those of Mazel, Fontugne and Fukuda, "A taxonomy of
anomalies in backbone network traffic", TRAC/IWCMC 2014, as MAWILab v1.1 uses
them (http://www.fukuda-lab.org/mawilab/documentation.html, signatures at
http://www.fukuda-lab.org/mawilab/classification/); the grouping into families is
ours. MAWILab writes short codes in its files (``ntscSYN``) and long names on its
web pages (``network_scan_SYN_t``); both are listed. A code matches the longest
listed prefix; a code matching none is ``other``.
"""

from __future__ import annotations

import dataclasses

import numpy as np

NORMAL = "normal"
NORMAL_NAMES = frozenset({"normal", "benign"})
SUSPICIOUS_CHOICES = ("anomalous", "drop", "separate")
POLICIES = ("binary", "family")
FAMILIES = ("scan", "dos_flood", "alpha_heavy_hitter", "tunnel", "other")

# Taxonomy code prefix -> (family, meaning). Longest prefix wins.
TAXONOMY_FAMILIES: dict[str, tuple[str, str]] = {
    # Scans: one source probing many destinations or ports.
    "ntsc": ("scan", "network scan (SYN, UDP, ICMP echo, RST/ACK responses...)"),
    "sntsc": ("scan", "small network scan"),
    "posca": ("scan", "port scan"),
    "ptpposca": ("scan", "point-to-point port scan"),
    "network_scan": ("scan", "network scan (long name)"),
    "small_network_scan": ("scan", "small network scan (long name)"),
    "port_scan": ("scan", "port scan (long name)"),
    "point_to_point_port_scan": ("scan", "point-to-point port scan (long name)"),
    # Denial of service and floods.
    "ptpDoS": ("dos_flood", "point-to-point DoS (SYN, UDP, ICMP flood)"),
    "DoS": ("dos_flood", "denial of service"),
    "DDoS": ("dos_flood", "distributed denial of service"),
    "rflat": ("dos_flood", "reflection attack (NTP, DNS...)"),
    "reflection_attack": ("dos_flood", "reflection attack (long name)"),
    "flood": ("dos_flood", "flood"),
    "ping_flood": ("dos_flood", "ICMP echo flood"),
    # Alpha flows and heavy hitters: very large point-to-point transfers.
    "alphfl": ("alpha_heavy_hitter", "alpha flow"),
    "salphfl": ("alpha_heavy_hitter", "small alpha flow"),
    "malphfl": ("alpha_heavy_hitter", "multipoint alpha flow"),
    "alpha_flow": ("alpha_heavy_hitter", "alpha flow (long name)"),
    "small_alpha_flow": ("alpha_heavy_hitter", "small alpha flow (long name)"),
    "heavy_hitter": ("alpha_heavy_hitter", "heavy hitter"),
    # Tunnels.
    "ipv4gretun": ("tunnel", "IPv4 GRE tunnel"),
    "ipv4_ipv6_tunnel": ("tunnel", "IPv6-in-IPv4 tunnel"),
    "ipv4tun": ("tunnel", "IPv4 tunnel"),
    "ipv6tun": ("tunnel", "IPv6 tunnel"),
    "ipv4_gre_tunnel": ("tunnel", "IPv4 GRE tunnel (long name)"),
    # Unknown patterns and errors.
    "ptmp": ("other", "point to multipoint (la: low activity)"),
    "mptp": ("other", "multipoint to point (la: low activity)"),
    "mptmp": ("other", "multipoint to multipoint"),
    "point_to_point": ("other", "point to point"),
    "point_to_multipoint": ("other", "point to multipoint (long name)"),
    "multipoint_to_point": ("other", "multipoint to point (long name)"),
    "multipoint_to_multipoint": ("other", "multipoint to multipoint (long name)"),
    "ttl_error": ("other", "TTL errors"),
    "icmp_error": ("other", "ICMP errors"),
    "empty": ("other", "no signature matched"),
    "unknown": ("other", "unknown"),
}
_PREFIXES_LONGEST_FIRST = sorted(TAXONOMY_FAMILIES, key=len, reverse=True)


def taxonomy_family(taxonomy: str | None) -> str:
    """The family (one of ``FAMILIES``) of a MAWILab taxonomy code."""
    if not taxonomy:
        return "other"
    for prefix in _PREFIXES_LONGEST_FIRST:
        if taxonomy.startswith(prefix):
            return TAXONOMY_FAMILIES[prefix][0]
    return "other"


@dataclasses.dataclass(frozen=True)
class LabelPolicy:
    """A policy (``binary`` or ``family``) and what to do with suspicious flows."""

    policy: str = "binary"
    suspicious: str = "anomalous"

    def __post_init__(self):
        if self.policy not in POLICIES:
            raise ValueError(
                f"labels.policy: expected one of {POLICIES}, found {self.policy!r}"
            )
        if self.suspicious not in SUSPICIOUS_CHOICES:
            raise ValueError(
                f"labels.suspicious: expected one of {SUSPICIOUS_CHOICES}, "
                f"found {self.suspicious!r}"
            )

    def describe(self) -> dict:
        """The policy as a JSON-able dict, for the report."""
        return {
            "policy": self.policy,
            "suspicious": self.suspicious,
            "notice": "normal",
            "taxonomy_source": "Mazel, Fontugne, Fukuda, TRAC 2014; MAWILab v1.1",
        }


def class_names(
    policy: LabelPolicy, names: np.ndarray, all_families: bool = False
) -> list[str]:
    """Class names, index = class id, for the label ``names`` present.

    ``names`` is an array of per-flow label names ('' = unlabelled); the names
    ``suspicious`` only appear for MAWILab flows labelled suspicious. With
    ``all_families`` every family is a class even when no flow has it, so that
    class ids stay the same from one MAWILab day to the next.
    """
    present = {str(name) for name in np.unique(names)} - {""}
    if all_families:
        present |= set(FAMILIES)
    suspicious_apart = policy.suspicious == "separate"
    if policy.policy == "binary":
        classes = [NORMAL, "anomalous"]
    else:
        families = [family for family in FAMILIES if family in present]
        others = sorted(
            name
            for name in present - set(FAMILIES) - {"suspicious", "anomalous"}
            if name.lower() not in NORMAL_NAMES
        )
        classes = [NORMAL, *families, *others]
        if "anomalous" in present:
            classes.append("anomalous")
    if suspicious_apart:
        classes.append("suspicious")
    return classes


def assign_classes(
    policy: LabelPolicy,
    names: np.ndarray,
    suspicious: np.ndarray,
    all_families: bool = False,
) -> tuple[np.ndarray, list[str]]:
    """Class id per flow (int32, -1 dropped/unlabelled) and the class names.

    ``names``: per-flow label names ('' unlabelled): a MAWILab family or a source's
    own label; normal names map to class 0. ``suspicious``: bool per flow, the
    flows MAWILab labelled suspicious (their name is their family).
    """
    names = np.asarray(names).astype(str)
    suspicious = np.asarray(suspicious, dtype=bool)
    present_names = np.where(suspicious & (policy.suspicious == "separate"), "", names)
    classes = class_names(policy, present_names, all_families)
    class_id = np.full(len(names), -1, dtype=np.int32)

    unique, inverse = np.unique(names, return_inverse=True)
    per_name = np.full(len(unique), -1, dtype=np.int32)
    for i, name in enumerate(unique.tolist()):
        if name == "":
            continue
        if name.lower() in NORMAL_NAMES:
            per_name[i] = 0
        elif policy.policy == "binary":
            per_name[i] = 1
        elif name in classes:
            per_name[i] = classes.index(name)
        # else: a name only suspicious flows carry, set apart below.
    class_id[:] = per_name[inverse.ravel()]

    if policy.suspicious == "drop":
        class_id[suspicious] = -1
    elif policy.suspicious == "separate":
        class_id[suspicious] = classes.index("suspicious")
    return class_id, classes
