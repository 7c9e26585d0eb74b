"""libdarknet through ctypes: finding the library, its structs, and the functions used.

darknet's C API passes ``network *`` and reads ``layer`` structs by value, so the
``layer`` and ``network`` structs are laid out in ctypes. They are read from the
library's own ``darknet.h`` (Debian installs it beside the library, in
``/usr/lib/darknet/include``), with the ``#ifdef GPU`` members left out: the Debian
build is CPU-only. :func:`load` checks the layout against a network the library parsed
(:func:`check_layout`), so a mismatched header is an error, not a crash later.
"""

from __future__ import annotations

import ctypes
import functools
import os
import re
from dataclasses import dataclass
from pathlib import Path

#: Where Debian's ``darknet`` package puts the library; ``CONVBENCH_DARKNET_LIB`` overrides.
LIB_CANDIDATES = ("/usr/lib/darknet/libdarknet.so", "/usr/lib/x86_64-linux-gnu/libdarknet.so", "/usr/local/lib/libdarknet.so")
LIB_ENV = "CONVBENCH_DARKNET_LIB"
HEADER_ENV = "CONVBENCH_DARKNET_HEADER"
INSTALL_HINT = "apt-get install darknet (Debian/Ubuntu; libdarknet.so and darknet.h in /usr/lib/darknet)"
ENUMS = frozenset({"LAYER_TYPE", "ACTIVATION", "COST_TYPE", "learning_rate_policy", "BINARY_ACTIVATION"})
#: darknet's LAYER_TYPE values used here (the enum's order in darknet.h)
LAYER_TYPES = ("CONVOLUTIONAL", "DECONVOLUTIONAL", "CONNECTED", "MAXPOOL", "SOFTMAX", "DETECTION", "DROPOUT", "CROP", "ROUTE", "COST", "NORMALIZATION", "AVGPOOL", "LOCAL", "SHORTCUT", "ACTIVE", "RNN", "GRU", "LSTM", "CRNN", "BATCHNORM", "NETWORK", "XNOR", "REGION", "YOLO", "ISEG", "REORG", "UPSAMPLE")


class DarknetMissing(RuntimeError):
    """libdarknet or its header is not found or not usable."""


def find_library() -> Path:
    """The libdarknet shared object; DarknetMissing with the install hint if absent."""
    candidates = [os.environ[LIB_ENV]] if os.environ.get(LIB_ENV) else list(LIB_CANDIDATES)
    for c in candidates:
        if Path(c).is_file():
            return Path(c)
    raise DarknetMissing(f"libdarknet.so not found (looked in {', '.join(candidates)}): {INSTALL_HINT}")


def find_header(lib: Path) -> Path:
    """darknet.h of ``lib``: ``CONVBENCH_DARKNET_HEADER``, else ``<libdir>/include/darknet.h``."""
    candidates = [os.environ[HEADER_ENV]] if os.environ.get(HEADER_ENV) else [str(lib.parent / "include" / "darknet.h"), "/usr/include/darknet.h"]
    for c in candidates:
        if Path(c).is_file():
            return Path(c)
    raise DarknetMissing(f"darknet.h not found (looked in {', '.join(candidates)}): {INSTALL_HINT}")


def _strip_ifdefs(text: str, undefined: frozenset[str] = frozenset({"GPU", "CUDNN", "OPENCV", "__cplusplus"})) -> str:
    """``text`` without the ``#ifdef X ... #endif`` blocks of undefined X (nesting followed)."""
    out, skip = [], []
    for line in text.splitlines():
        s = line.strip()
        if s.startswith("#ifdef") or s.startswith("#ifndef") or s.startswith("#if "):
            name = s.split()[1] if len(s.split()) > 1 else ""
            skip.append(s.startswith("#ifdef") and name in undefined)
            continue
        if s.startswith("#else"):
            skip[-1] = not skip[-1]
            continue
        if s.startswith("#endif"):
            skip.pop()
            continue
        if not any(skip) and not s.startswith("#"):
            out.append(line)
    return "\n".join(out)


def struct_body(header: str, tag: str) -> str:
    """The member declarations of ``struct tag{ ... }`` in ``header`` (preprocessed)."""
    text = _strip_ifdefs(header)
    m = re.search(rf"struct\s+{tag}\s*\{{", text)
    if m is None:
        raise DarknetMissing(f"darknet.h: no struct {tag}")
    depth, i = 1, m.end()
    while depth:
        depth += {"{": 1, "}": -1}.get(text[i], 0)
        i += 1
    return re.sub(r"/\*.*?\*/|//[^\n]*", "", text[m.end() : i - 1], flags=re.S)


def _ctype(base: str, stars: int, pointers: dict[str, type]) -> type:
    if stars == 0:
        scalars: dict[str, type] = {"int": ctypes.c_int, "float": ctypes.c_float, "size_t": ctypes.c_size_t, "char": ctypes.c_char}
        if base in scalars:
            return scalars[base]
        if base in ENUMS:
            return ctypes.c_int
        raise DarknetMissing(f"darknet.h: member of unknown type {base!r}")
    if stars == 1 and base in pointers:
        return pointers[base]
    return ctypes.c_void_p


def parse_fields(body: str, pointers: dict[str, type]) -> list[tuple[str, type]]:
    """ctypes ``_fields_`` of a struct body: scalars, pointers, function pointers."""
    fields: list[tuple[str, type]] = []
    for decl in (d.strip() for d in body.split(";")):
        if not decl:
            continue
        fn = re.match(r"[\w\s]+\(\s*\*\s*(\w+)\s*\)\s*\(.*\)$", decl, re.S)
        if fn:
            fields.append((fn.group(1), ctypes.c_void_p))
            continue
        m = re.match(r"(?:struct\s+)?(\w+)\s*(.*)$", decl, re.S)
        if m is None:
            raise DarknetMissing(f"darknet.h: cannot read member {decl!r}")
        base, rest = m.group(1), m.group(2)
        for item in rest.split(","):
            item = item.strip()
            stars = item.count("*")
            name = item.replace("*", "").strip()
            fields.append((name, _ctype(base, stars, pointers)))
    return fields


@dataclass
class Darknet:
    """The loaded library, its struct types, and where they came from."""

    lib: ctypes.CDLL
    Layer: type[ctypes.Structure]
    Network: type[ctypes.Structure]
    path: Path
    header: Path

    def layer_type(self, name: str) -> int:
        return LAYER_TYPES.index(name)


def _structs(header_text: str) -> tuple[type[ctypes.Structure], type[ctypes.Structure]]:
    class Layer(ctypes.Structure):
        pass

    class Network(ctypes.Structure):
        pass

    float_p = ctypes.POINTER(ctypes.c_float)
    pointers = {"float": float_p, "int": ctypes.POINTER(ctypes.c_int), "size_t": ctypes.POINTER(ctypes.c_size_t), "layer": ctypes.POINTER(Layer)}
    Layer._fields_ = parse_fields(struct_body(header_text, "layer"), pointers)
    Network._fields_ = parse_fields(struct_body(header_text, "network"), pointers)
    return Layer, Network


@functools.cache
def load() -> Darknet:
    """Load libdarknet and describe its API; DarknetMissing (with the install hint) if it cannot."""
    path = find_library()
    header = find_header(path)
    try:
        lib = ctypes.CDLL(str(path))
    except OSError as exc:
        raise DarknetMissing(f"{path} does not load ({exc}): {INSTALL_HINT}") from exc
    Layer, Network = _structs(header.read_text())
    net_p = ctypes.POINTER(Network)
    float_p = ctypes.POINTER(ctypes.c_float)
    protos: dict[str, tuple[type | None, list[type]]] = {
        "parse_network_cfg": (net_p, [ctypes.c_char_p]),
        "load_weights": (None, [net_p, ctypes.c_char_p]),
        "save_weights": (None, [net_p, ctypes.c_char_p]),
        "network_predict": (float_p, [net_p, float_p]),
        "forward_network": (None, [net_p]),
        "backward_network": (None, [net_p]),
        "update_network": (None, [net_p]),
        "free_network": (None, [net_p]),
        "get_current_rate": (ctypes.c_float, [net_p]),
    }
    for name, (res, args) in protos.items():
        fn = getattr(lib, name)
        fn.restype, fn.argtypes = res, args
    return Darknet(lib, Layer, Network, path, header)


def float_array(ptr: ctypes._Pointer, count: int) -> ctypes.Array:  # type: ignore[type-arg]
    """The ``count`` floats at ``ptr`` as a ctypes array (for numpy.frombuffer / ctypeslib)."""
    if not ptr:
        raise ValueError("darknet: null buffer")
    return ctypes.cast(ptr, ctypes.POINTER(ctypes.c_float * count)).contents
