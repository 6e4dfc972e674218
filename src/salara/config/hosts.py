"""Hosts and URLs as salara compares and shows them: one spelling per address, secrets masked.

Pure functions of strings; names are never looked up.
"""

from __future__ import annotations

import ipaddress
import re

_LOCAL_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})


def normalise_host(host: str) -> str:
    """``host`` as the system's resolver reads it: one spelling per address or name.

    Lower case, without brackets or a trailing dot (``localhost.`` is
    ``localhost``); an IPv4 address in any form ``inet_aton`` accepts
    (``127.1``, ``2130706433``, ``0x7f.1``, ``0``) in dotted quad; an IPv6
    address compressed, a v4-mapped one as its IPv4 address. Names are not
    looked up.
    """
    host = host.strip().strip("[]").lower().rstrip(".")
    try:
        address: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        if not host or not re.fullmatch(r"[0-9a-fx.]+", host):
            return host
        number = inet_aton(host)
        return host if number is None else str(ipaddress.IPv4Address(number))
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return str(address)


_HEX = re.compile(r"0[xX][0-9a-fA-F]*")
_OCTAL = re.compile(r"0[0-7]*")
_DECIMAL = re.compile(r"[1-9][0-9]*")


def inet_aton(text: str) -> int | None:
    """An IPv4 address in any form the C resolver's ``inet_aton(3)`` reads, as a number; None if none.

    ``a.b.c.d``, ``a.b.c`` (c 16 bits), ``a.b`` (b 24 bits) or ``a`` (32 bits);
    each part decimal, octal (leading ``0``) or hexadecimal (``0x``).

    >>> inet_aton("127.1") == inet_aton("0x7f.1") == inet_aton("2130706433") == 0x7F000001
    True
    """
    parts = text.split(".")
    if not 1 <= len(parts) <= 4:
        return None
    values = []
    for part in parts:
        if _HEX.fullmatch(part):
            values.append(int(part[2:] or "-1", 16) if len(part) > 2 else -1)
        elif _OCTAL.fullmatch(part):
            values.append(int(part, 8))
        elif _DECIMAL.fullmatch(part):
            values.append(int(part))
        else:
            return None
    *head, last = values
    if any(not 0 <= value <= 255 for value in head) or not 0 <= last < 1 << (8 * (5 - len(values))):
        return None
    number = 0
    for value in head:
        number = number << 8 | value
    return number << (32 - 8 * len(head)) | last


def is_loopback_name(host: str) -> bool:
    """Whether ``host`` (a name or an address) names this machine's loopback only (not every address)."""
    host = normalise_host(host)
    if host in _LOCAL_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_local_host(host: str) -> bool:
    """Whether ``host`` names this machine's loopback or every address (``0.0.0.0``, ``::``)."""
    host = normalise_host(host)
    if host in _LOCAL_NAMES:
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or address.is_unspecified


_SECRET_PARAMETER = re.compile(r"key|token|secret|pass|pwd|auth|sig|credential|session", re.IGNORECASE)
_USERINFO = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*:)?//[^/?#]*@")
_PARAMETER = re.compile(r"([?&;])([^=&;#]*)=([^&;#]*)")


def mask_url(url: str) -> str:
    """``url`` fit to show: credentials (``user:pass@``) and secret-looking query values as ``***``.

    A query parameter counts as secret when its name holds ``key``,
    ``token``, ``secret``, ``pass``, ``pwd``, ``auth``, ``sig``,
    ``credential`` or ``session`` (``api_key=``, ``access_token=``...).
    Everything else is kept as written. A secret that is simply part of the
    path cannot be told apart from the path and is shown.

    >>> mask_url("https://crm:hunter2@crm.example/hook?api_key=abc&phone=")
    'https://***@crm.example/hook?api_key=***&phone='
    """

    def parameter(match: re.Match[str]) -> str:
        separator, name, value = match.groups()
        if value and _SECRET_PARAMETER.search(name):
            value = "***"
        return f"{separator}{name}={value}"

    def userinfo(match: re.Match[str]) -> str:
        return f"{match.group(1) or ''}//***@"

    return _PARAMETER.sub(parameter, _USERINFO.sub(userinfo, url, count=1))
