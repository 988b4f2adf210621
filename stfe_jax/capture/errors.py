"""The typed error raised when a file is not a capture the reader understands."""


class CaptureFormatError(ValueError):
    """A capture file (or stream) that cannot be read as pcap or pcapng.

    The message names the file, the byte offset (in the decompressed stream for
    gzip files) and what was expected and found there.
    """
