"""Layer roles a recipe can name (``int8_keep_float: [stem, classifier]``), found in any ONNX graph.

ONNX node names change with the exporter and its version, so recipes name layers by the part they play,
and the roles are found by position in the (topologically sorted) graph.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from edgetl.errors import EdgetlError

if TYPE_CHECKING:
    import onnx

ROLES = ("stem", "classifier")


def nodes_for_roles(model: onnx.ModelProto, roles: Iterable[str]) -> list[str]:
    """Names of the nodes playing ``roles``: ``stem`` = the first Conv, ``classifier`` = the last Gemm/MatMul."""
    nodes = list(model.graph.node)
    found: list[str] = []
    for role in roles:
        if role == "stem":
            match = next((n for n in nodes if n.op_type == "Conv"), None)
        elif role == "classifier":
            match = next((n for n in reversed(nodes) if n.op_type in ("Gemm", "MatMul")), None)
        else:
            raise EdgetlError(f"unknown layer role {role!r} in int8_keep_float; choose from {', '.join(ROLES)}")
        if match is not None and match.name:
            found.append(match.name)
    return found
