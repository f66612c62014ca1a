"""`Content-Disposition: attachment` for a download, so browsers save the file, not show it.

The file name is the key's last segment. Quoted-string `filename` gets a safe ASCII form
(anything outside `[A-Za-z0-9._-]` becomes `_`, so no quote, backslash or CR/LF can end or
break the header); a name that needed changing also travels exactly as RFC 6266/5987
`filename*=UTF-8''...` (percent-encoded), which every current browser prefers.
"""

from __future__ import annotations

import re
from urllib.parse import quote

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
FALLBACK = "download"


def attachment(key: str) -> str:
    """The header value for downloading object `key`."""
    name = key.rstrip("/").rsplit("/", 1)[-1]
    safe = _UNSAFE.sub("_", name).strip(".") or FALLBACK
    value = f'attachment; filename="{safe}"'
    if name and safe != name:
        value += f"; filename*=UTF-8''{quote(name, safe='')}"
    return value
