"""LINKTYPE_* numbers the reader knows, with their names for messages."""

ETHERNET = 1
PPP = 9
RAW_DLT12 = 12
RAW_DLT14 = 14
PPP_HDLC = 50
RAW = 101
C_HDLC = 104
LOOP = 108
LINUX_SLL = 113
IPV4 = 228
IPV6 = 229
LINUX_SLL2 = 276
NULL = 0
FDDI = 10
FRELAY = 107
ARCNET_LINUX = 129
IEEE802_11 = 105
IEEE802_11_RADIOTAP = 127
PRISM = 119
PPI = 192
IPNET = 226
NFLOG = 239

# Link types whose network header the decoder finds.
DECODED = frozenset(
    {
        NULL,
        ETHERNET,
        PPP,
        RAW_DLT12,
        RAW_DLT14,
        PPP_HDLC,
        RAW,
        C_HDLC,
        LOOP,
        LINUX_SLL,
        IPV4,
        IPV6,
        LINUX_SLL2,
        FDDI,
        FRELAY,
        ARCNET_LINUX,
        IEEE802_11,
        IEEE802_11_RADIOTAP,
        PRISM,
        PPI,
        IPNET,
        NFLOG,
    }
)

NAMES = {
    0: "NULL",
    1: "ETHERNET",
    8: "SLIP",
    9: "PPP",
    10: "FDDI",
    12: "RAW(DLT 12)",
    14: "RAW(DLT 14)",
    50: "PPP_HDLC",
    101: "RAW",
    104: "C_HDLC",
    105: "IEEE802_11",
    107: "FRELAY",
    108: "LOOP",
    113: "LINUX_SLL",
    119: "PRISM",
    123: "SUNATM",
    127: "IEEE802_11_RADIOTAP",
    129: "ARCNET_LINUX",
    192: "PPI",
    195: "IEEE802_15_4_WITHFCS",
    227: "CAN_SOCKETCAN",
    228: "IPV4",
    226: "IPNET",
    229: "IPV6",
    230: "IEEE802_15_4_NOFCS",
    239: "NFLOG",
    271: "VSOCK",
    274: "ETHERNET_MPACKET",
    276: "LINUX_SLL2",
}


def link_type_name(link_type: int) -> str:
    """A readable name for a LINKTYPE_* number, e.g. ``"ETHERNET"``."""
    return NAMES.get(link_type, f"LINKTYPE_{link_type}")
