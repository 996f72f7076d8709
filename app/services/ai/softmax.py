"""Multinomial logistic regression (L2, weighted samples) fitted by L-BFGS in numpy."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

Objective = Callable[[np.ndarray], tuple[float, np.ndarray]]


def log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def _dot(a: np.ndarray, b: np.ndarray) -> float:
    # Elementwise, not BLAS: for vectors this short, BLAS threads cost more than they save on a busy host.
    return float(np.multiply(a, b).sum())


def lbfgs(
    objective: Objective, x0: np.ndarray, *, max_iter: int, history: int = 10, tol: float = 1e-5
) -> np.ndarray:
    """Minimise a smooth convex function: two-loop recursion and Armijo backtracking."""
    x = x0
    f, g = objective(x)
    steps: list[tuple[np.ndarray, np.ndarray, float]] = []
    for _ in range(max_iter):
        if float(np.abs(g).max()) < tol:
            break
        q = g.copy()
        alphas = []
        for s, y, rho in reversed(steps):
            a = rho * _dot(s, q)
            q -= a * y
            alphas.append(a)
        if steps:
            s, y, _ = steps[-1]
            q *= _dot(s, y) / _dot(y, y)
        else:
            q /= max(1.0, float(np.linalg.norm(g)))
        for (s, y, rho), a in zip(steps, reversed(alphas)):
            b = rho * _dot(y, q)
            q += (a - b) * s
        direction = -q
        slope = _dot(g, direction)
        if slope >= 0:  # not a descent direction (numerical noise): restart from the gradient
            steps.clear()
            direction, slope = -g, -_dot(g, g)
        step = 1.0
        while True:
            x_new = x + step * direction
            f_new, g_new = objective(x_new)
            if f_new <= f + 1e-4 * step * slope or step < 1e-8:
                break
            step *= 0.5
        s, y = x_new - x, g_new - g
        sy = _dot(s, y)
        if sy > 1e-10:
            steps.append((s, y, 1.0 / sy))
            if len(steps) > history:
                steps.pop(0)
        converged = abs(f - f_new) <= 1e-9 * max(1.0, abs(f))
        x, f, g = x_new, f_new, g_new
        if converged:
            break
    return x


def fit(
    x: np.ndarray,
    labels: np.ndarray,
    n_classes: int,
    *,
    c: float,
    weights: np.ndarray | None = None,
    max_iter: int = 200,
    init: np.ndarray | None = None,
) -> np.ndarray:
    """Weights (features + 1 bias row) x classes minimising C * sum(w_i * CE_i) + |W|^2 / 2 (bias free).

    The same objective as scikit-learn's LogisticRegression(C=c), so its C means the same here.
    """
    n, d = x.shape
    xb = np.hstack([x, np.ones((n, 1), dtype=x.dtype)]).astype(np.float64)
    onehot = np.zeros((n, n_classes))
    onehot[np.arange(n), labels] = 1.0
    w = np.ones(n) if weights is None else weights.astype(np.float64)
    reg = np.ones((d + 1, 1))
    reg[-1] = 0.0

    def objective(flat: np.ndarray) -> tuple[float, np.ndarray]:
        theta = flat.reshape(d + 1, n_classes)
        logp = log_softmax(xb @ theta)
        loss = -c * float((w * (onehot * logp).sum(axis=1)).sum()) + 0.5 * float((reg * theta * theta).sum())
        grad = c * xb.T @ ((np.exp(logp) - onehot) * w[:, None]) + reg * theta
        return loss, grad.ravel()

    start = np.zeros((d + 1) * n_classes) if init is None else init.astype(np.float64).ravel()
    return lbfgs(objective, start, max_iter=max_iter).reshape(d + 1, n_classes).astype(np.float32)


def logits(x: np.ndarray, theta: np.ndarray) -> np.ndarray:
    return x @ theta[:-1] + theta[-1]
