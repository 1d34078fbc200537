"""Networks that map a preprocessed pattern and a molecule to 3D coordinates.

Both take a batch of one molecule's inputs: ``x`` (B, Q) standardised patterns, ``numbers`` (N,) atomic
numbers and ``reference`` (N, 3) its reference geometry (Å, centred), and return (B, N, 3) coordinates in the
reference's frame: the reference plus a predicted displacement.  Giving the network the molecule (elements,
bonds, a reference shape) is what lets one network serve many molecules, and predicting displacements from a
known shape, trained with an aligned RMSD, keeps the output from collapsing onto the pool's mean structure:
the mean is the starting point, and any loss reduction has to come from reading the pattern.

* :class:`Interpreter`: the general model.  The pattern becomes a few pattern tokens (an MLP read-out with a
  learned position each, then self-attention); atom tokens (element, bonded-neighbour elements, degree, atom
  index, reference coordinates) attend to each other and cross-attend to the pattern tokens.
* :class:`DetectorCNN`: the Interpreter reading 2D detector images (aligned ensembles, on a (χ, q) grid)
  through a 2D CNN.
* :class:`SeedCNNGRU`: the CNN encoder and recurrent decoder over atoms of the original design (Si & Ma,
  Xstructure design report), kept as a reference.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ..structures import bond_graph

__all__ = ["Interpreter", "DetectorCNN", "SeedCNNGRU", "MODELS", "build_model", "bond_graph"]

MAX_Z = 100
MAX_ATOMS = 256


class _AtomTokens(nn.Module):
    """Atom token = element + mean of bonded neighbours' elements + degree + index + reference coordinates."""

    def __init__(self, d: int):
        super().__init__()
        self.element = nn.Embedding(MAX_Z + 1, d)
        self.neighbour = nn.Embedding(MAX_Z + 1, d)
        self.degree = nn.Embedding(8, d)
        self.index = nn.Embedding(MAX_ATOMS, d)
        self.coord = nn.Linear(3, d)

    def forward(self, numbers: Tensor, reference: Tensor, adj: Tensor) -> Tensor:
        N = numbers.shape[0]
        if N > MAX_ATOMS:
            raise ValueError(f"molecules of up to {MAX_ATOMS} atoms are supported, got {N}")
        deg = adj.sum(1)
        nb = (adj.to(reference.dtype) @ self.neighbour(numbers)) / deg.clamp(min=1).unsqueeze(1).to(reference.dtype)
        idx = torch.arange(N, device=numbers.device)
        return (self.element(numbers) + nb + self.degree(deg.clamp(max=7)) + self.index(idx) +
                self.coord(reference))


class Interpreter(nn.Module):
    """Transformer that reads a standardised pattern and a molecule and predicts its 3D structure.

    Pattern tokens: an MLP maps the standardised pattern to ``tokens`` vectors of width ``d`` (plus a learned
    position each), refined by ``enc_layers`` of self-attention. An MLP read-out instead of one token per patch
    of q points keeps the cost per pattern small (a 2-core CPU trains 10^5 patterns an epoch in under a minute)
    while every token can still draw on every q point. Atom tokens pass through ``layers`` decoder layers
    (self-attention among atoms, cross-attention to the pattern tokens), then a linear head gives each atom's
    displacement from the reference (starting at zero, so an untrained model predicts the reference).

    Parameters
    ----------
    n_q : int
        Input width Q (points of the standardised pattern).
    d : int, optional
        Token width.
    heads : int, optional
        Attention heads.
    layers : int, optional
        Decoder layers.
    tokens : int, optional
        Pattern tokens.
    hidden : int, optional
        Width of the MLPs.
    enc_layers : int, optional
        Self-attention layers over the pattern tokens.
    dropout : float, optional
        Dropout probability in training.
    out_scale : float, optional
        Scale of the predicted displacements, Å.
    """

    def __init__(self, n_q: int, d: int = 128, heads: int = 4, layers: int = 3, tokens: int = 16,
                 hidden: int = 512, enc_layers: int = 1, dropout: float = 0.0, out_scale: float = 0.1):
        super().__init__()
        self.n_q, self.d, self.tokens = int(n_q), int(d), int(tokens)
        self.out_scale = float(out_scale)
        self.read = self._reader(hidden)
        self.pos = nn.Parameter(torch.randn(self.tokens, d) * 0.02)
        enc = nn.TransformerEncoderLayer(d, heads, 4 * d, dropout, batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(enc, enc_layers, enable_nested_tensor=False) if enc_layers else None
        self.atoms = _AtomTokens(d)
        dec = nn.TransformerDecoderLayer(d, heads, 4 * d, dropout, batch_first=True, norm_first=True)
        self.decoder = nn.TransformerDecoder(dec, layers)
        self.norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, 3)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def _reader(self, hidden: int) -> nn.Module:
        """Pattern (B, n_q) → (B, tokens · d)."""
        return nn.Sequential(nn.Linear(self.n_q, hidden), nn.GELU(), nn.Linear(hidden, self.tokens * self.d))

    def forward(self, x: Tensor, numbers: Tensor, reference: Tensor, adj: Tensor) -> Tensor:
        """Structures from standardised inputs.

        Parameters
        ----------
        x : torch.Tensor
            (B, n_q) standardised patterns (see :class:`~xstructure.learn.data.Standardizer`).
        numbers : torch.Tensor
            (N,) atomic numbers of the molecule.
        reference : torch.Tensor
            (N, 3) its centred reference geometry, Å.
        adj : torch.Tensor
            (N, N) bool bond graph of the reference.

        Returns
        -------
        torch.Tensor
            (B, N, 3) predicted positions in Å, in the reference's frame.
        """
        B = x.shape[0]
        if x.dim() != 2 or x.shape[1] != self.n_q:
            raise ValueError(f"patterns must have shape (B, {self.n_q}), got {tuple(x.shape)}")
        mem = self.read(x).view(B, self.tokens, self.d) + self.pos
        if self.encoder is not None:
            mem = self.encoder(mem)
        h = self._decode(self.atoms(numbers, reference, adj).unsqueeze(0), mem)
        delta = self.head(self.norm(h)) * self.out_scale
        out = reference.unsqueeze(0) + delta
        return out - out.mean(dim=1, keepdim=True)

    def _decode(self, tok: Tensor, mem: Tensor) -> Tensor:
        """``self.decoder(tok.expand(B, ...), mem)`` (the layers' own weights, norms and dropouts), computed
        batch-first with :func:`_attend`, and with the first layer's self-attention and its cross-attention
        query done once: before any cross-attention the atom tokens are the same for every pattern."""
        first, *rest = self.decoder.layers
        h = tok + first.dropout1(_attend(first.self_attn, first.norm1(tok)))           # (1, N, d)
        h = h + first.dropout2(_attend(first.multihead_attn, first.norm2(h), mem))    # (B, N, d)
        h = h + first._ff_block(first.norm3(h))
        for layer in rest:
            h = h + layer.dropout1(_attend(layer.self_attn, layer.norm1(h)))
            h = h + layer.dropout2(_attend(layer.multihead_attn, layer.norm2(h), mem))
            h = h + layer._ff_block(layer.norm3(h))
        return h


def _attend(mha: nn.MultiheadAttention, x: Tensor, mem: Tensor | None = None) -> Tensor:
    """``mha(x, mem, mem)`` (self-attention when ``mem`` is None) for batch-first (B, L, d) inputs, without
    the (L, B, d) transposes that nn.MultiheadAttention makes of them: for a few dozen tokens those copies
    cost more than the attention (inference 1.2-1.5x faster, same result to float rounding).  ``x`` may
    have batch 1 against a batch of ``mem``: its query projection is then made once."""
    d, H = mha.embed_dim, mha.num_heads
    W, b = mha.in_proj_weight, mha.in_proj_bias
    if mem is None:
        q, k, v = F.linear(x, W, b).split(d, -1)
    else:
        q = F.linear(x, W[:d], b[:d])
        k, v = F.linear(mem, W[d:], b[d:]).split(d, -1)
    B = max(q.shape[0], k.shape[0])

    def heads(t):  # (b, n, d) -> (B, H, n, d / H), a view
        return t.unflatten(-1, (H, d // H)).transpose(1, 2).expand(B, -1, -1, -1)

    o = F.scaled_dot_product_attention(heads(q), heads(k), heads(v), dropout_p=mha.dropout if mha.training else 0.0)
    return mha.out_proj(o.transpose(1, 2).flatten(2))


class DetectorCNN(Interpreter):
    """The Interpreter with a 2D CNN read-out for detector images on a (χ, q) grid (see
    :mod:`xstructure.learn.detector`).

    The first convolution's kernels span every azimuth bin and 5 q points: the alignment axis fixes the image's
    azimuthal shape (I_0 + P_2 I_2 + P_4 I_4, with P_l of the angle to that axis), so a shift in χ is no symmetry
    and each kernel is a learned angular projection, local in q. A second convolution (along q, stride 2) and an
    MLP map the features to the pattern tokens; the atom decoder is the Interpreter's. The read-out costs a
    fraction of the decoder, so images are read nearly as fast as 1D patterns.

    Parameters
    ----------
    n_q : int
        Input width, n_chi × Q (the flattened image).
    image : tuple of int, optional
        (n_chi, Q) image shape.
    channels : int, optional
        Channels of the first convolution.
    **kw
        The :class:`Interpreter`'s options (``d``, ``heads``, ``layers``, ``tokens``, ...).
    """

    def __init__(self, n_q: int, image=(8, 500), channels: int = 8, **kw):
        self.image = (int(image[0]), int(image[1]))
        self.channels = int(channels)
        if self.image[0] * self.image[1] != int(n_q):
            raise ValueError(f"an image of {self.image} does not have {n_q} values")
        super().__init__(n_q, **kw)

    def _reader(self, hidden: int) -> nn.Module:
        c, (n_chi, n_q) = self.channels, self.image
        return nn.Sequential(
            nn.Unflatten(1, (1,) + self.image),
            nn.Conv2d(1, c, (n_chi, 5), padding=(0, 2)), nn.GELU(),
            nn.Conv2d(c, c, (1, 5), padding=(0, 2), stride=(1, 2)), nn.GELU(),
            nn.Flatten(), nn.Linear(c * ((n_q + 1) // 2), hidden), nn.GELU(), nn.Linear(hidden, self.tokens * self.d))


class SeedCNNGRU(nn.Module):
    """The CNN+GRU of the original design (Si & Ma): a 1D CNN encodes the pattern; a GRU emits one atom's
    coordinates per step.

    Kept as the reference the Transformer is compared with.

    Parameters
    ----------
    n_q : int
        Input width Q.
    d : int, optional
        Width of the GRU state.
    channels : int, optional
        Channels of the first convolution.
    out_scale : float, optional
        Scale of the predicted displacements, Å.
    **_
        Ignored (the Transformer's options, so that one configuration builds either model).
    """

    def __init__(self, n_q: int, d: int = 128, channels: int = 32, out_scale: float = 0.1, **_):
        super().__init__()
        self.n_q, self.d, self.out_scale = int(n_q), int(d), float(out_scale)
        c = channels
        self.cnn = nn.Sequential(
            nn.Conv1d(1, c, 7, padding=3), nn.GELU(), nn.MaxPool1d(2),
            nn.Conv1d(c, 2 * c, 5, padding=2), nn.GELU(), nn.MaxPool1d(2),
            nn.Conv1d(2 * c, 4 * c, 3, padding=1), nn.GELU(), nn.AdaptiveAvgPool1d(8))
        self.latent = nn.Linear(4 * c * 8, d)
        self.element = nn.Embedding(MAX_Z + 1, d)
        self.coord = nn.Linear(3, d)
        self.gru = nn.GRU(d, d, batch_first=True)
        self.head = nn.Linear(d, 3)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, x: Tensor, numbers: Tensor, reference: Tensor, adj: Tensor | None = None) -> Tensor:
        """Structures from standardised inputs (B, n_q): (B, N, 3) positions in Å, as :meth:`Interpreter.forward`."""
        B = x.shape[0]
        if x.shape[1] != self.n_q:
            raise ValueError(f"pattern has {x.shape[1]} q points, the model takes {self.n_q}")
        z = self.latent(self.cnn(x.unsqueeze(1)).flatten(1))                     # (B, d)
        inp = (self.element(numbers) + self.coord(reference)).unsqueeze(0).expand(B, -1, -1)
        h, _ = self.gru(inp, z.unsqueeze(0).contiguous())
        out = reference.unsqueeze(0) + self.head(h) * self.out_scale
        return out - out.mean(dim=1, keepdim=True)


MODELS = {"transformer": Interpreter, "cnn_gru": SeedCNNGRU, "detector_cnn": DetectorCNN}


def build_model(kind: str, n_q: int, **kw) -> nn.Module:
    """A network of :data:`MODELS` by name.

    Parameters
    ----------
    kind : {'transformer', 'cnn_gru', 'detector_cnn'}
        :class:`Interpreter`, :class:`SeedCNNGRU` or :class:`DetectorCNN`.
    n_q : int
        Input width.
    **kw
        The model's options.

    Returns
    -------
    torch.nn.Module
        The untrained network.

    Raises
    ------
    ValueError
        An unknown kind.
    """
    if kind not in MODELS:
        raise ValueError(f"unknown model {kind!r}: use one of {sorted(MODELS)}")
    return MODELS[kind](n_q, **kw)
