"""The channel dependency graph: channel spaces joined by the rules' relations.

Analysis starts from the axes that own weights (rule relations marked ``seed``) and follows every
relation of every node touching a reached space, so a space is reached exactly when something
couples it to a weight axis. Each reached space is a node of a :mod:`networkx` graph; each
relation an edge.

Within a space every channel is an *atom*. Relations tie atoms one-to-one (:class:`Same`), to a
range (:class:`Part`) or one-to-block (:class:`Expand`); the connected sets of atoms are the
*channels* that pruning removes as units, and the connected components of spaces are the
*groups* reported to the user. A channel is frozen when any of its atoms lies in a space that a
barrier touched: an op without a rule, an axis a rule declares opaque or says nothing about, a
graph input or output, or a user's ``--ignore``.
"""

from __future__ import annotations

import fnmatch
import logging
from collections import defaultdict
from dataclasses import dataclass, field

import networkx as nx
import numpy as np
import onnx_graphsurgeon as gs

from .graph import Model, is_const
from .profile import LINEAR_OPS
from .rules import (
    Expand,
    Free,
    Opaque,
    Part,
    Relation,
    RuleContext,
    Same,
    SpaceKey,
    find_rule,
)

__all__ = ["Space", "Group", "DepGraph", "build_depgraph"]

log = logging.getLogger(__name__)


@dataclass
class Space:
    """One channel-carrying axis of one tensor (or a virtual axis such as a Conv's groups)."""

    key: SpaceKey
    size: int
    start: int = 0
    const: bool = False
    virtual: bool = False
    reasons: list[str] = field(default_factory=list)

    @property
    def frozen(self) -> bool:
        return bool(self.reasons)

    def atoms(self) -> np.ndarray:
        return np.arange(self.start, self.start + self.size)


@dataclass
class Group:
    """Spaces that are coupled; its channels are removed from all of them at once.

    Attributes:
        id: index in :attr:`DepGraph.groups`.
        spaces: keys of the coupled spaces.
        channels: global channel ids of this group (sorted).
        prunable: per channel, whether it may be removed.
        strata: per channel, a small int; channels of one stratum sit in exactly the same spaces
            (one concat input, one conv's output), so a ratio is applied per stratum.
        reasons: why channels are frozen (deduplicated).
        members: names of nodes that own a weight axis in this group.
        unit: output elements one channel spans in the layers with weights that compute it (the
            narrowest such span in the group): 1 for a Conv's output channels, also when a
            Flatten spreads each over many Gemm inputs; the head width for an attention head
            (a projection's ``[B,S,H*D]``).
    """

    id: int
    spaces: list[SpaceKey]
    channels: np.ndarray
    prunable: np.ndarray
    strata: np.ndarray
    reasons: list[str]
    members: list[str]
    unit: int = 1

    @property
    def size(self) -> int:
        return len(self.channels)

    @property
    def n_prunable(self) -> int:
        return int(self.prunable.sum())

    @property
    def is_barrier(self) -> bool:
        return self.n_prunable == 0


def _union_find(n: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Connected components of ``n`` atoms joined by pairs ``(a[i], b[i])`` (vectorized)."""
    parent = np.arange(n, dtype=np.int64)
    if len(a) == 0:
        return parent
    while True:
        pa, pb = parent[a], parent[b]
        if np.array_equal(pa, pb):
            return parent
        m = np.minimum(pa, pb)
        np.minimum.at(parent, pa, m)
        np.minimum.at(parent, pb, m)
        while True:  # pointer jumping until every atom points at its root
            pp = parent[parent]
            if np.array_equal(pp, parent):
                break
            parent = pp


class DepGraph:
    """Channel spaces, the relations between them, and the resulting groups and channels."""

    def __init__(self, model: Model) -> None:
        self.model = model
        self.spaces: dict[SpaceKey, Space] = {}
        self.graph = nx.Graph()
        self.groups: list[Group] = []
        #: global atom id -> global channel id
        self.atom_channel = np.zeros(0, dtype=np.int64)
        self.channel_frozen = np.zeros(0, dtype=bool)
        self.channel_group = np.zeros(0, dtype=np.int64)
        self.n_channels = 0

    # -------------------------------------------------------------- queries
    def space_channels(self, key: SpaceKey) -> np.ndarray:
        """Channel id of every atom of a space."""
        sp = self.spaces[key]
        return self.atom_channel[sp.start : sp.start + sp.size]

    def kept_indices(self, removed: np.ndarray) -> dict[SpaceKey, np.ndarray]:
        """For each space losing atoms, the indices it keeps (``removed``: bool per channel)."""
        out: dict[SpaceKey, np.ndarray] = {}
        for key in self.spaces:
            drop = removed[self.space_channels(key)]
            if drop.any():
                out[key] = np.flatnonzero(~drop)
        return out

    def barriers(self) -> list[tuple[SpaceKey, str]]:
        return [(k, r) for k, sp in self.spaces.items() for r in sp.reasons]


def build_depgraph(
    model: Model, ignore: list[str] | None = None, prune_hidden: bool = False
) -> DepGraph:
    """Analyses ``model`` and returns its dependency graph.

    Args:
        model: the loaded model (its static shapes are used).
        ignore: node or tensor names (shell globs) whose channels must not be pruned.
        prune_hidden: let channels pass through normalizations over the channel axis
            (a transformer's residual width); off by default because it is lossy.
    """
    dg = DepGraph(model)
    graph = model.graph
    ctx = RuleContext(shapes=model.shapes, opset=model.opset, prune_hidden=prune_hidden)
    tensors = graph.tensors()

    # 1. Every rule declares its relations once.
    by_key: dict[SpaceKey, list[tuple[gs.Node, Relation]]] = defaultdict(list)
    no_rule: dict[str, gs.Node] = {}
    in_subgraph: set[tuple[str, str]] = set()
    touching: dict[str, list[gs.Node]] = defaultdict(list)
    seeds: list[SpaceKey] = []
    for node in graph.nodes:
        for t in list(node.inputs) + list(node.outputs):
            if t.name and node not in touching[t.name]:
                touching[t.name].append(node)
        for sub in _subgraph_outer_refs(node):
            touching[sub].append(node)
            no_rule[node.name] = node
            in_subgraph.add((node.name, sub))
        rule = find_rule(node, model.opset)
        if rule is None:
            no_rule[node.name] = node
            continue
        try:
            rels = rule(node, ctx)
        except Exception as exc:  # a rule must never take the analysis down
            log.warning("rule for %s '%s' failed (%s); treating it as a barrier", node.op, node.name, exc)
            no_rule[node.name] = node
            continue
        for rel in rels:
            for key in _keys(rel):
                by_key[key].append((node, rel))
            if getattr(rel, "seed", False):
                seeds.extend(_keys(rel))
    for key in ctx.virtual_sizes:
        owner = key[0].rsplit("#", 1)[0]
        touching[key[0]] = [n for n in graph.nodes if n.name == owner][:1]

    # 2. Reach every space coupled to a weight axis.
    def size_of(key: SpaceKey) -> int | None:
        if key in ctx.virtual_sizes:
            return ctx.virtual_sizes[key]
        t = tensors.get(key[0])
        shape = ctx.shape(t) if t is not None else None
        if shape is None or not 0 <= key[1] < len(shape):
            return None
        return shape[key[1]]

    unsized: list[SpaceKey] = []
    pending: dict[tuple[str, SpaceKey], list[Expand]] = defaultdict(list)
    queue = list(dict.fromkeys(seeds))
    seen: set[SpaceKey] = set(queue)
    edges: list[Relation] = []
    freeze: dict[SpaceKey, list[str]] = defaultdict(list)
    while queue:
        key = queue.pop()
        size = size_of(key)
        if size is None:
            unsized.append(key)
        dg.graph.add_node(key)
        rels_here = by_key.get(key, [])
        for node in touching.get(key[0], []):
            if node.name in no_rule:
                dom = f" (domain {node.domain})" if getattr(node, "domain", "") else ""
                if (node.name, key[0]) in in_subgraph:
                    freeze[key].append(
                        f"{node.op} '{node.name}' reads '{key[0]}' inside a subgraph (barrier)"
                    )
                else:
                    freeze[key].append(f"{node.op}{dom} '{node.name}' has no channel rule (barrier)")
                continue
            mine = [r for n, r in rels_here if n is node]
            if not mine:
                freeze[key].append(
                    f"{node.op} '{node.name}' says nothing about axis {key[1]} of '{key[0]}'"
                )
                continue
            for rel in mine:
                nxt: SpaceKey | None = None
                if isinstance(rel, Same):
                    nxt = rel.b if rel.a == key else rel.a
                elif isinstance(rel, Part):
                    nxt = rel.part if rel.whole == key else rel.whole
                elif isinstance(rel, Expand):
                    if rel.coarse == key or rel.follow_up:
                        nxt = rel.fine if rel.coarse == key else rel.coarse
                    else:
                        pending[(node.name, key)].append(rel)
                        continue
                elif isinstance(rel, Opaque):
                    freeze[key].append(rel.reason)
                    continue
                elif isinstance(rel, Free):
                    continue
                if nxt is None or nxt == key:
                    continue
                edges.append(rel)
                if nxt not in seen:
                    seen.add(nxt)
                    queue.append(nxt)

    # 3. A fine space whose every relation at some node waits for a coarse space that never
    #    appeared cannot be pruned feature by feature.
    for (node_name, key), rels in pending.items():
        active = [r for r in rels if r.coarse in seen]
        other = [
            r
            for n, r in by_key.get(key, [])
            if n.name == node_name and (not isinstance(r, Expand) or r.follow_up or r.coarse == key)
        ]
        if not active and not other:
            src = ", ".join(f"'{r.coarse[0]}' axis {r.coarse[1]}" for r in rels)
            freeze[key].append(
                f"features of '{key[0]}' axis {key[1]} are built from {src}, which carries no channels"
            )
        for r in active:
            edges.append(r)

    # 3b. One fine axis split into factors keeps one factor as its channel carrier.
    io_names = {t.name for t in graph.inputs} | {t.name for t in graph.outputs}
    edges = _choose_factors(edges, freeze, seen, io_names)

    # 4. Spaces, sizes, and the atom layout.
    outputs = {t.name for t in graph.outputs}
    start = 0
    for key in seen:
        size = size_of(key)
        t = tensors.get(key[0])
        sp = Space(
            key=key,
            size=size or 0,
            start=start,
            const=t is not None and is_const(t),
            virtual=key in ctx.virtual_sizes,
        )
        start += sp.size
        sp.reasons.extend(dict.fromkeys(freeze.get(key, [])))
        if size is None:
            sp.reasons.append(f"size of '{key[0]}' axis {key[1]} is unknown (try --input-shape)")
        if key[0] in io_names:
            kind = "graph output" if key[0] in outputs else "graph input"
            sp.reasons.append(f"'{key[0]}' is a {kind}; its shape must not change")
        dg.spaces[key] = sp
    _apply_ignore(dg, ignore or [], touching)

    # 5. Join atoms along the relations.
    pairs_a: list[np.ndarray] = []
    pairs_b: list[np.ndarray] = []
    unique_edges = list(dict.fromkeys(edges))
    for rel in unique_edges:
        ok = _pairs(dg, rel, pairs_a, pairs_b)
        if not ok:
            for key in _keys(rel):
                if key in dg.spaces:
                    dg.spaces[key].reasons.append(f"sizes disagree across {_describe(rel)}")
        else:
            a, b = _keys(rel)[:2]
            dg.graph.add_edge(a, b, rel=rel)
    a = np.concatenate(pairs_a) if pairs_a else np.zeros(0, dtype=np.int64)
    b = np.concatenate(pairs_b) if pairs_b else np.zeros(0, dtype=np.int64)
    roots = _union_find(start, a, b)
    _, channel = np.unique(roots, return_inverse=True)
    dg.atom_channel = channel.astype(np.int64)
    dg.n_channels = int(channel.max()) + 1 if start else 0
    frozen = np.zeros(dg.n_channels, dtype=bool)
    for sp in dg.spaces.values():
        if sp.frozen and sp.size:
            frozen[dg.space_channels(sp.key)] = True
    dg.channel_frozen = frozen

    # 6. Groups = connected components of spaces.
    rng = np.random.default_rng(12345)
    signature = np.zeros(dg.n_channels, dtype=np.uint64)
    for sp in dg.spaces.values():
        if sp.size:
            tag = rng.integers(1, 2**63, dtype=np.int64).astype(np.uint64)
            signature[np.unique(dg.space_channels(sp.key))] ^= tag
    dg.channel_group = np.full(dg.n_channels, -1, dtype=np.int64)
    members_of = _weight_owners(dg, touching)
    comps = sorted(
        (sorted(c) for c in nx.connected_components(dg.graph)), key=lambda c: dg.spaces[c[0]].start
    )
    # Outputs of layers with a weight: the widths their kernels compute (a channel's unit).
    weighted = {n.outputs[0].name for n in graph.nodes
                if n.op in _WEIGHTED_OPS and n.outputs and any(is_const(t) for t in n.inputs)}
    for gid, comp in enumerate(comps):
        chans = np.unique(np.concatenate([dg.space_channels(k) for k in comp]))
        _, strata = np.unique(signature[chans], return_inverse=True)
        reasons = list(dict.fromkeys(r for k in comp for r in dg.spaces[k].reasons))
        members = list(dict.fromkeys(m for k in comp for m in members_of.get(k, [])))
        unit = min((dg.spaces[k].size // max(1, len(np.unique(dg.space_channels(k))))
                    for k in comp if dg.spaces[k].size and k[0] in weighted), default=1)
        dg.groups.append(
            Group(
                id=gid,
                spaces=comp,
                channels=chans,
                prunable=~frozen[chans],
                strata=strata.astype(np.int64),
                reasons=reasons,
                members=members,
                unit=max(1, unit),
            )
        )
        dg.channel_group[chans] = gid
    return dg


_WEIGHTED_OPS = frozenset(LINEAR_OPS) | {"ConvInteger", "MatMulInteger", "QLinearConv", "QLinearMatMul"}


def _choose_factors(
    edges: list[Relation], freeze: dict[SpaceKey, list[str]], seen: set[SpaceKey], interface: set[str] = frozenset()  # type: ignore[assignment]
) -> list[Relation]:
    """Keeps, per factor family, the Expand of the outermost factor whose spaces are not frozen.

    Tying a fine axis to two factors at once would merge all its channels into one; the heads
    factor is what users prune. A factor not kept is frozen, so nothing reached only through it
    can be cut out of step with the fine axis. Axes of graph inputs and outputs (``interface``)
    count as frozen: a batch merged with the heads (``[B*H, S, D]``) is never the carrier.
    """
    families: dict[str, list[Expand]] = defaultdict(list)
    plain: list[Relation] = []
    for rel in edges:
        if isinstance(rel, Expand) and rel.family is not None:
            if rel not in families[rel.family]:
                families[rel.family].append(rel)
        else:
            plain.append(rel)
    if not families:
        return edges
    g = nx.Graph()
    g.add_nodes_from(seen)
    for rel in plain:
        a, b = _keys(rel)[:2]
        g.add_edge(a, b)
    comp_of: dict[SpaceKey, int] = {}
    frozen_comp: set[int] = set()
    for i, comp in enumerate(nx.connected_components(g)):
        for k in comp:
            comp_of[k] = i
            if freeze.get(k) or k[0] in interface:
                frozen_comp.add(i)
    kept: list[Relation] = []
    for fam in families.values():
        fam = sorted(fam, key=lambda r: r.outer)  # outermost factor first
        chosen = next((r for r in fam if comp_of.get(r.coarse) not in frozen_comp), None)
        for r in fam:
            if r is chosen:
                kept.append(r)
            elif r.coarse in seen:
                freeze[r.coarse].append(
                    f"'{r.coarse[0]}' axis {r.coarse[1]} is a factor of '{r.fine[0]}' axis "
                    f"{r.fine[1]}, whose channels follow another factor"
                )
        if chosen is None:
            freeze[fam[0].fine].append(
                f"'{fam[0].fine[0]}' axis {fam[0].fine[1]} splits into factors that are all frozen"
            )
    return plain + kept


def _keys(rel: Relation) -> list[SpaceKey]:
    if isinstance(rel, Same):
        return [rel.a, rel.b]
    if isinstance(rel, Part):
        return [rel.whole, rel.part]
    if isinstance(rel, Expand):
        return [rel.coarse, rel.fine]
    return [rel.space]


def _describe(rel: Relation) -> str:
    k = _keys(rel)
    return f"{type(rel).__name__} '{k[0][0]}'[{k[0][1]}] ~ '{k[1][0]}'[{k[1][1]}]"


def _pairs(dg: DepGraph, rel: Relation, pa: list[np.ndarray], pb: list[np.ndarray]) -> bool:
    """Appends the atom pairs a relation joins; False when sizes do not fit together."""
    if isinstance(rel, Same):
        x, y = dg.spaces[rel.a], dg.spaces[rel.b]
        if x.size != y.size:
            return False
        pa.append(x.atoms())
        pb.append(y.atoms())
    elif isinstance(rel, Part):
        w, p = dg.spaces[rel.whole], dg.spaces[rel.part]
        if rel.offset < 0 or rel.offset + p.size > w.size:
            return False
        pa.append(w.atoms()[rel.offset : rel.offset + p.size])
        pb.append(p.atoms())
    elif isinstance(rel, Expand):
        c, f = dg.spaces[rel.coarse], dg.spaces[rel.fine]
        if f.size != rel.outer * c.size * rel.inner or c.size == 0:
            return False
        coarse = np.broadcast_to(c.atoms()[None, :, None], (rel.outer, c.size, rel.inner))
        pa.append(coarse.reshape(-1))
        pb.append(f.atoms())
    return True


def _subgraph_outer_refs(node: gs.Node) -> list[str]:
    """Names of outer tensors a node's subgraphs (If/Loop/Scan bodies) read implicitly.

    Nested subgraphs count too: a tensor read three levels down is still read by ``node``.
    """
    names: list[str] = []
    for v in node.attrs.values():
        subs = v if isinstance(v, list) else [v]
        for sub in subs:
            if isinstance(sub, gs.Graph):
                local = {t.name for n in sub.nodes for t in n.outputs} | {t.name for t in sub.inputs}
                for n in sub.nodes:
                    names += [t.name for t in n.inputs if t.name and t.name not in local]
                    names += [t for t in _subgraph_outer_refs(n) if t not in local]
    return list(dict.fromkeys(names))


def _apply_ignore(dg: DepGraph, patterns: list[str], touching: dict[str, list[gs.Node]]) -> None:
    if not patterns:
        return
    hit = 0
    for key, sp in dg.spaces.items():
        tensor = key[0].rsplit("#", 1)[0]
        names = [tensor] + [n.name for n in touching.get(key[0], [])]
        for pat in patterns:
            if any(fnmatch.fnmatchcase(n, pat) for n in names):
                sp.reasons.append(f"ignored by the user ('{pat}')")
                hit += 1
                break
    if not hit:
        log.warning("--ignore matched nothing: %s", ", ".join(patterns))


def _weight_owners(dg: DepGraph, touching: dict[str, list[gs.Node]]) -> dict[SpaceKey, list[str]]:
    out: dict[SpaceKey, list[str]] = {}
    for key, sp in dg.spaces.items():
        if sp.const:
            out[key] = [n.name for n in touching.get(key[0], []) if n.op != "Constant"]
    return out
