"""TIGER's RQ-VAE: an MLP auto-encoder with residual quantization on its latent.

Encoder dim -> hidden_dims -> latent_dim and a mirrored decoder (ReLU between layers, linear ends).
`levels` codebooks of K codes quantize the latent residual greedily, level by level. Training
minimises, averaged over rows, ||x - x_hat||^2 plus per level ||sg[r] - e||^2 + beta * ||r - sg[e]||^2,
with a straight-through estimator carrying the decoder's gradient past the quantizer. Codebooks start from
k-means on the first latents; codes unused for `dead_code_steps` steps restart on random residuals.

The fitted `RQVAETokenizer` holds numpy float32 weights. `encode` runs torch on the configured device;
`encode_reference` (base class) runs a numpy MLP and `residual_level_distances`. Both compute in
float64 and round the latent to float32 the same way, so they agree exactly barring float64 ties.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from genrec_core.device import resolve_device
from genrec_core.quantize.base import Tokenizer, register
from genrec_core.quantize.rq_kmeans import (
    effective_codebook_size,
    residual_level_distances,
)

ENCODE_BATCH = 8192
HISTORY_POINTS = 20


# --- MLP: flat parameter lists [W0, b0, W1, b1, ...], W in torch's [out, in] layout ---------------

def mlp_sizes(dim: int, hidden_dims, latent_dim: int) -> tuple[list[int], list[int]]:
    """Layer widths of the encoder (dim -> ... -> latent) and the mirrored decoder."""
    encoder = [dim, *hidden_dims, latent_dim]
    return encoder, encoder[::-1]


def init_mlp(sizes: list[int], gen):
    """nn.Linear's default init (U(+-1/sqrt(fan_in))) drawn from `gen`, so the global RNG is untouched."""
    import torch

    params = []
    for fan_in, fan_out in zip(sizes, sizes[1:]):
        bound = fan_in ** -0.5
        params.append(torch.empty(fan_out, fan_in).uniform_(-bound, bound, generator=gen))
        params.append(torch.empty(fan_out).uniform_(-bound, bound, generator=gen))
    return params


def torch_mlp(params, x):
    """x [n, in] -> [n, out]; ReLU between layers, none after the last."""
    for i in range(0, len(params), 2):
        # `x @ W.T + b` rather than addmm so the rounding matches numpy_mlp.
        x = x @ params[i].T + params[i + 1]
        if i + 2 < len(params):
            x = x.clamp_min(0)
    return x


def numpy_mlp(params, x: np.ndarray) -> np.ndarray:
    """The same forward pass in numpy float64."""
    x = np.asarray(x, dtype=np.float64)
    for i in range(0, len(params), 2):
        x = x @ params[i].astype(np.float64).T + params[i + 1].astype(np.float64)
        if i + 2 < len(params):
            x = np.maximum(x, 0.0)
    return x


# --- residual quantization in torch ---------------------------------------------------------------

def nearest_codes(residual, book):
    """Index [n] of the nearest code; same expansion and first-index tie-break as the numpy reference."""
    dist = (residual ** 2).sum(1, keepdim=True) - 2.0 * residual @ book.T + (book ** 2).sum(1)[None, :]
    return dist.argmin(1)


def greedy_codes(z, books):
    """Greedy residual descent: z [n, d], books [K_l, d] -> codes [n, L] (int64)."""
    import torch

    residual = z.clone()
    codes = []
    for book in books:
        idx = nearest_codes(residual, book)
        residual = residual - book[idx]
        codes.append(idx)
    return torch.stack(codes, 1)


def torch_kmeans(x, k: int, niter: int, gen):
    """Lloyd's k-means on x [n, d]; seeded init from `gen`. Empty clusters keep their centroid and are
    left to the dead-code restart. One-hot matmuls keep the update deterministic on GPU too."""
    import torch

    n = x.shape[0]
    pick = torch.randperm(n, generator=gen)[:k] if n >= k else torch.randint(n, (k,), generator=gen)
    centroids = x[pick.to(x.device)].clone()
    for _ in range(niter):
        onehot = torch.nn.functional.one_hot(nearest_codes(x, centroids), k).to(x.dtype)
        counts = onehot.sum(0)
        filled = counts > 0
        centroids[filled] = (onehot.T @ x)[filled] / counts[filled, None]
    return centroids


def kmeans_init_codebooks(z, levels: int, k: int, niter: int, gen):
    """Residual k-means on latents z [n, d]: one codebook [k, d] per level."""
    residual = z.clone()
    books = []
    for _ in range(levels):
        book = torch_kmeans(residual, k, niter, gen)
        residual = residual - book[nearest_codes(residual, book)]
        books.append(book)
    return books


def restart_dead_codes(book, residual, last_used, step: int, dead_code_steps: int, gen) -> int:
    """Moves codes of `book` [K, d] unused for >= dead_code_steps steps (last_used [K]: step of last use)
    onto random rows of this batch's `residual` [n, d] at their level, in place. Returns how many."""
    import torch

    dead = (step - last_used >= dead_code_steps).nonzero().flatten()
    if dead.numel() == 0:
        return 0
    rows = torch.randint(residual.shape[0], (dead.numel(),), generator=gen).to(residual.device)
    with torch.no_grad():
        book[dead] = residual[rows].to(book.dtype)
    last_used[dead] = step
    return int(dead.numel())


def sq_norm(diff):
    """Mean over rows of the squared L2 norm, TIGER's ||.||^2. Not a per-element MSE: that would
    shrink the reconstruction term by the input dim (384) against the latent terms, and the latents
    then collapse onto a few codes."""
    return (diff ** 2).sum(1).mean()


def quantize(z, books, beta: float):
    """Greedy residual quantization of z [n, d] with trainable books.

    Returns the straight-through quantized latent (value: sum of codewords; gradient: to z), the codes
    [n, L], the residual each level saw (detached) and the summed codebook + commitment loss."""
    import torch

    residual, quantized, vq_loss = z, torch.zeros_like(z), z.new_zeros(())
    codes, residuals = [], []
    for book in books:
        idx = nearest_codes(residual.detach(), book.detach())
        e = book[idx]
        vq_loss = vq_loss + sq_norm(e - residual.detach()) + beta * sq_norm(residual - e.detach())
        codes.append(idx)
        residuals.append(residual.detach())
        quantized = quantized + e.detach()
        residual = residual - e.detach()
    return z + (quantized - z).detach(), torch.stack(codes, 1), residuals, vq_loss


# --- training --------------------------------------------------------------------------------------

def batch_indices(n: int, batch: int, steps: int, gen):
    """`steps` index tensors of size min(batch, n), walking seeded permutations epoch after epoch."""
    import torch

    batch = min(batch, n)
    order = torch.empty(0, dtype=torch.long)
    for _ in range(steps):
        if order.numel() < batch:
            order = torch.cat([order, torch.randperm(n, generator=gen)])
        yield order[:batch]
        order = order[batch:]


def _generators(seed: int):
    """Independent streams for init, batches and restarts, so changing one knob leaves the others."""
    import torch

    states = np.random.SeedSequence(seed).generate_state(3, dtype=np.uint64)
    return [torch.Generator().manual_seed(int(s) >> 1) for s in states]


def _check_config(rq) -> None:
    if min(rq.latent_dim, rq.steps, rq.batch_size, rq.dead_code_steps, *rq.hidden_dims, 1) < 1:
        raise ValueError("rqvae latent_dim, hidden_dims, steps, batch_size and dead_code_steps must be >= 1")
    if rq.learning_rate <= 0 or rq.commitment_beta < 0:
        raise ValueError("rqvae learning_rate must be > 0 and commitment_beta >= 0")


class _Trainer:
    """Parameters, optimizer and dead-code bookkeeping of one RQ-VAE fit."""

    def __init__(self, x: np.ndarray, cfg, seed: int):
        import torch

        self.rq = rq = cfg.rqvae
        self.device = torch.device(resolve_device(rq.device))
        self.x = torch.from_numpy(x)
        self.k = effective_codebook_size(x.shape[0], cfg.codebook_size, cfg.min_points_per_code)
        self.gen_init, self.gen_batch, self.gen_restart = _generators(seed)
        enc_sizes, dec_sizes = mlp_sizes(x.shape[1], rq.hidden_dims, rq.latent_dim)
        self.encoder = self._params(init_mlp(enc_sizes, self.gen_init))
        self.decoder = self._params(init_mlp(dec_sizes, self.gen_init))
        self.books = self._params(self._init_books(cfg.levels, cfg.niter))
        self.opt = torch.optim.Adam(self.encoder + self.decoder + self.books, lr=rq.learning_rate)
        self.last_used = torch.zeros(cfg.levels, self.k, dtype=torch.long, device=self.device)
        self.restarts = 0

    def _params(self, tensors):
        return [t.to(self.device).requires_grad_() for t in tensors]

    def _init_books(self, levels: int, niter: int):
        # TIGER seeds the codebooks with k-means on the first batch; a few batches' worth (>= 16
        # points per code) keeps K=256 from fitting 4 points per centroid.
        import torch

        n_init = min(self.x.shape[0], max(self.rq.batch_size, 16 * self.k))
        rows = torch.randperm(self.x.shape[0], generator=self.gen_init)[:n_init]
        with torch.no_grad():
            z = torch_mlp(self.encoder, self.x[rows].to(self.device))
            return kmeans_init_codebooks(z, levels, self.k, niter, self.gen_init)

    def step(self, step: int, idx):
        """One optimizer step on rows `idx`; returns the reconstruction loss ||x - x_hat||^2 (0-d)."""
        xb = self.x[idx].to(self.device)
        z_q, codes, residuals, vq_loss = quantize(torch_mlp(self.encoder, xb), self.books,
                                                  self.rq.commitment_beta)
        recon = sq_norm(torch_mlp(self.decoder, z_q) - xb)
        self.opt.zero_grad(set_to_none=True)
        (recon + vq_loss).backward()
        self.opt.step()
        for level, book in enumerate(self.books):
            self.last_used[level, codes[:, level]] = step
            self.restarts += restart_dead_codes(book, residuals[level], self.last_used[level], step,
                                                self.rq.dead_code_steps, self.gen_restart)
        return recon.detach()

    def numpy_state(self):
        to_np = lambda ts: [np.ascontiguousarray(t.detach().cpu().numpy(), dtype=np.float32) for t in ts]
        return to_np(self.encoder), to_np(self.decoder), to_np(self.books)


def fit_rqvae(x: np.ndarray, cfg, seed: int, progress=None) -> "RQVAETokenizer":
    """Trains an RQ-VAE on x float32 [n, dim] with a TokenizeConfig (cfg.rqvae, levels, codebook_size,
    min_points_per_code, niter for the k-means init). Deterministic under `seed` on CPU.
    `progress(step, steps, {"recon": loss, "restarts": n})` once per loss window."""
    _check_config(cfg.rqvae)
    x = np.ascontiguousarray(x, dtype=np.float32)
    trainer = _Trainer(x, cfg, seed)
    steps = cfg.rqvae.steps
    window = -(-steps // HISTORY_POINTS)  # ceil, so the history has at most HISTORY_POINTS entries
    history, window_sum = [], 0.0
    for step, idx in enumerate(batch_indices(x.shape[0], cfg.rqvae.batch_size, steps, trainer.gen_batch)):
        window_sum = trainer.step(step, idx) + window_sum
        if (step + 1) % window == 0 or step + 1 == steps:
            # Read the loss back once per window, not every step.
            history.append(float(window_sum) / (step % window + 1))
            window_sum = 0.0
            if progress is not None:
                progress(step + 1, steps, {"recon": history[-1], "restarts": trainer.restarts})
    encoder, decoder, books = trainer.numpy_state()
    train = {"steps": steps, "seed": seed, "device": str(trainer.device), "restarts": trainer.restarts,
             "recon_loss_history": history, "final_recon_loss": history[-1]}
    return RQVAETokenizer(encoder, decoder, books, device=cfg.rqvae.device, train=train)


# --- tokenizer -------------------------------------------------------------------------------------

@register("rqvae", fit_rqvae)
class RQVAETokenizer(Tokenizer):
    """encoder/decoder: flat [W0, b0, ...] float32 (W is [out, in]); codebooks[l]: float32 [K, latent]."""

    def __init__(self, encoder, decoder, codebooks, device: str = "auto", train: dict | None = None):
        as32 = lambda arrays: [np.ascontiguousarray(a, dtype=np.float32) for a in arrays]
        self.encoder, self.decoder = as32(encoder), as32(decoder)
        self.codebooks = tuple(as32(codebooks))
        # Kept unresolved ("auto") so a tokenizer fitted on a GPU still encodes on a CPU-only host.
        self.device = device
        self.train = dict(train or {})

    @property
    def level_sizes(self) -> tuple[int, ...]:
        return tuple(int(c.shape[0]) for c in self.codebooks)

    @property
    def dim(self) -> int:
        return int(self.encoder[0].shape[1])

    @property
    def latent_dim(self) -> int:
        return int(self.codebooks[0].shape[1])

    @property
    def hidden_dims(self) -> tuple[int, ...]:
        return tuple(int(w.shape[0]) for w in self.encoder[0:-2:2])

    def latent(self, x: np.ndarray) -> np.ndarray:
        """Encoder output float32 [n, latent_dim], computed in float64 then rounded (as `encode` does)."""
        return numpy_mlp(self.encoder, self._check_input(x)).astype(np.float32)

    def level_distances(self, z, prefix, level):
        return residual_level_distances(self.codebooks, z, prefix, level)

    def encode(self, x: np.ndarray) -> np.ndarray:
        """Torch fast path, batched on the configured device: int64 [n, L]."""
        import torch

        x = self._check_input(x)
        device = torch.device(resolve_device(self.device))
        # float64 so the argmin matches the numpy reference instead of flipping on float32 near-ties.
        as64 = lambda arrays: [torch.from_numpy(a).to(device, torch.float64) for a in arrays]
        encoder, books = as64(self.encoder), as64(self.codebooks)
        codes = np.empty((x.shape[0], self.levels), dtype=np.int64)
        with torch.no_grad():
            for start in range(0, x.shape[0], ENCODE_BATCH):
                xb = torch.from_numpy(x[start:start + ENCODE_BATCH]).to(device, torch.float64)
                z = torch_mlp(encoder, xb).to(torch.float32).to(torch.float64)
                codes[start:start + ENCODE_BATCH] = greedy_codes(z, books).cpu().numpy()
        return codes

    def decode(self, codes: np.ndarray) -> np.ndarray:
        codes = np.asarray(codes, dtype=np.int64)
        z = np.zeros((codes.shape[0], self.latent_dim), dtype=np.float64)
        for level, book in enumerate(self.codebooks):
            z += book[codes[:, level]].astype(np.float64)
        return numpy_mlp(self.decoder, z).astype(np.float32)

    def _check_input(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"rqvae tokenizer expects [n, {self.dim}] vectors, got shape {x.shape}")
        return x

    def state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        arrays = {f"encoder_{i}": a for i, a in enumerate(self.encoder)}
        arrays.update({f"decoder_{i}": a for i, a in enumerate(self.decoder)})
        arrays.update({f"codebook_{i}": c for i, c in enumerate(self.codebooks)})
        header = {"kind": self.kind, "dim": self.dim, "latent_dim": self.latent_dim,
                  "hidden_dims": list(self.hidden_dims), "levels": self.levels,
                  "level_sizes": list(self.level_sizes), "device": self.device, "train": self.train}
        return arrays, header

    @classmethod
    def from_state(cls, arrays, header):
        if header.get("kind") != cls.kind:
            raise ValueError(f"not a {cls.kind} tokenizer: {header.get('kind')!r}")
        n_params = 2 * (len(header["hidden_dims"]) + 1)
        tok = cls([arrays[f"encoder_{i}"] for i in range(n_params)],
                  [arrays[f"decoder_{i}"] for i in range(n_params)],
                  [arrays[f"codebook_{i}"] for i in range(header["levels"])],
                  device=header.get("device", "auto"), train=header.get("train"))
        tok._check_shapes(header)
        return tok

    def _check_shapes(self, header) -> None:
        # Refuse arrays that disagree with their header rather than encode with a mismatched model.
        enc_sizes, dec_sizes = mlp_sizes(header["dim"], header["hidden_dims"], header["latent_dim"])
        for params, sizes in ((self.encoder, enc_sizes), (self.decoder, dec_sizes)):
            got = [tuple(w.shape) for w in params[0::2]] + [tuple(b.shape) for b in params[1::2]]
            want = [(o, i) for i, o in zip(sizes, sizes[1:])] + [(o,) for o in sizes[1:]]
            if got != want:
                raise ValueError(f"rqvae weights {got} do not match the header's layer sizes {sizes}")
        books = [tuple(c.shape) for c in self.codebooks]
        if books != [(k, header["latent_dim"]) for k in header["level_sizes"]]:
            raise ValueError(f"rqvae codebooks {books} do not match the header {header['level_sizes']}")
