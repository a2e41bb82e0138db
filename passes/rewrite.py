"""Graph-editing primitives shared by the rewrite passes.

Every rewrite that removes a node must keep graph outputs by name: when a removed node produced
a graph output, its producer is made to write that output tensor directly instead.
"""

from __future__ import annotations

import numpy as np
import onnx_graphsurgeon as gs

__all__ = [
    "bypass",
    "compact",
    "consumers",
    "detach",
    "single_consumer",
    "new_constant",
    "is_graph_output",
]

def is_graph_output(graph: gs.Graph, t: gs.Tensor) -> bool:
    return any(o is t for o in graph.outputs)


def _is_graph_input(graph: gs.Graph, t: gs.Tensor) -> bool:
    return any(i is t for i in graph.inputs)


def consumers(t: gs.Tensor) -> list[gs.Node]:
    """Nodes reading ``t`` (each once)."""
    seen: dict[int, gs.Node] = {}
    for n in t.outputs:
        seen.setdefault(id(n), n)
    return list(seen.values())


def single_consumer(graph: gs.Graph, t: gs.Tensor) -> gs.Node | None:
    """The only node reading ``t``, if ``t`` is read exactly once and is no graph output."""
    if is_graph_output(graph, t) or len(t.outputs) != 1:
        return None
    return t.outputs[0]


def new_constant(
    graph: gs.Graph, base: str, values: np.ndarray, taken: set[str] | None = None
) -> gs.Constant:
    """A new initializer with a name not yet in ``graph``.

    ``taken`` (the graph's tensor names, kept up to date by this function) saves a walk over
    the graph per call when a pass makes many constants.
    """
    names = taken if taken is not None else set(graph.tensors())
    name, k = base, 0
    while name in names:
        k += 1
        name = f"{base}_{k}"
    names.add(name)
    return gs.Constant(name, np.array(values, order="C"))  # (ascontiguousarray would make scalars 1-D)


def detach(node: gs.Node) -> None:
    """Disconnects ``node``; :func:`compact` then drops it from the node list.

    Removing from the list one node at a time compares nodes by value (slow on big graphs), so
    passes detach as they go and compact once.
    """
    node.inputs.clear()
    node.outputs.clear()


def compact(graph: gs.Graph) -> int:
    """Drops detached nodes (nodes without outputs) from ``graph``; returns how many."""
    keep = [n for n in graph.nodes if n.outputs]
    dropped = len(graph.nodes) - len(keep)
    if dropped:
        graph.nodes = keep
    return dropped


def _replace_uses(old: gs.Tensor, new: gs.Tensor, skip: gs.Node | None = None) -> None:
    for node in consumers(old):
        if node is skip:
            continue
        for i, t in enumerate(node.inputs):
            if t is old:
                node.inputs[i] = new


def bypass(graph: gs.Graph, node: gs.Node, src: gs.Tensor, dst: gs.Tensor) -> bool:
    """Removes ``node``, whose output ``dst`` equals its input ``src``.

    Readers of ``dst`` read ``src`` instead. When ``dst`` is a graph output, ``src``'s producer
    writes ``dst`` directly (and ``src``'s other readers follow), so the output keeps its name,
    type and shape; when that is impossible (``src`` is a graph input, a graph output or a
    constant) the node stays and ``False`` is returned. The node is detached; the caller
    runs :func:`compact` when done.
    """
    if not is_graph_output(graph, dst):
        _replace_uses(dst, src)
    else:
        if (
            not isinstance(src, gs.Variable)
            or len(src.inputs) != 1
            or _is_graph_input(graph, src)
            or is_graph_output(graph, src)
        ):
            return False
        producer = src.inputs[0]
        _replace_uses(src, dst, skip=node)
        k = next(i for i, t in enumerate(producer.outputs) if t is src)
        node.outputs.clear()
        producer.outputs[k] = dst
    detach(node)
    return True
