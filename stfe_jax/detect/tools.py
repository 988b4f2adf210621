"""Finding Wireshark's command-line tools (tshark, dumpcap), with install advice."""

from __future__ import annotations

import shutil

INSTALL_HINT = (
    "install Wireshark's command-line tools: `sudo apt-get install tshark` "
    "(Debian/Ubuntu; it brings dumpcap), `sudo dnf install wireshark-cli` (Fedora) "
    "or `brew install wireshark` (macOS)"
)


class ToolMissingError(RuntimeError):
    """A Wireshark tool is not on the PATH; the message says how to install it."""


def require_tool(name: str, purpose: str) -> str:
    """The full path of ``name`` (e.g. "tshark") on the PATH.

    Raises:
      ToolMissingError: not found; names what needed it and how to install it.
    """
    path = shutil.which(name)
    if path is None:
        raise ToolMissingError(
            f"{name} not found on the PATH, needed for {purpose}; {INSTALL_HINT}"
        )
    return path
