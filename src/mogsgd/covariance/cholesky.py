"""Log-Cholesky factors of precision matrices, with NumPy only (eqs. 39, 46).

A precision matrix ``Lambda = Sigma^-1`` is stored as an upper-triangular ``U`` with
``Lambda = U U^T`` and a positive diagonal, which is scikit-learn's
``precisions_cholesky_``: ``U = L^-T`` for the lower Cholesky factor ``L`` of
``Sigma``.  The *stored* array ``A`` (the ``log_chol`` field) holds ``log U_dd`` on
its diagonal and ``U_de`` (d < e) above it; below the diagonal it is 0 and carries
no parameter.  Every ``A`` gives a positive-definite ``Lambda`` (eq. 39).

All functions take a single (D, D) matrix or a stack (..., D, D).  The only
"inversion" anywhere is a triangular solve by forward substitution.
"""

from __future__ import annotations

import numpy as np

from mogsgd.errors import ValidationError

__all__ = ["factor", "log_factor", "log_det_half", "solve_lower", "factor_from_cov",
           "cov_from_factor", "floor_eigenvalues", "project_factor"]


def factor(log_chol: np.ndarray) -> np.ndarray:
    """``U = triu(A, 1) + diag(exp(diag A))``: the precision's upper factor (eq. 39)."""
    A = np.asarray(log_chol)
    U = np.triu(A, 1)
    diag = np.einsum("...dd->...d", U)  # writable view of the diagonal
    diag[...] = np.exp(np.einsum("...dd->...d", A))
    return U


def log_factor(U: np.ndarray) -> np.ndarray:
    """Inverse of :func:`factor`: ``A = triu(U, 1) + diag(log diag U)`` (eq. 39)."""
    U = np.asarray(U)
    A = np.triu(U, 1)
    diag = np.einsum("...dd->...d", A)
    diag[...] = np.log(np.einsum("...dd->...d", U))
    return A


def log_det_half(log_chol: np.ndarray) -> np.ndarray:
    """``log det(Lambda)^(1/2) = sum_d log U_dd = trace A`` — no determinant formed (eq. 40)."""
    return np.einsum("...dd->...", np.asarray(log_chol))


def solve_lower(L: np.ndarray, B: np.ndarray) -> np.ndarray:
    """``X`` with ``L X = B`` for lower-triangular ``L`` (..., D, D), ``B`` (..., D, m).

    Forward substitution, one row at a time, vectorised over the stack.
    """
    L = np.asarray(L)
    B = np.asarray(B)
    X = np.empty(np.broadcast_shapes(L.shape[:-2], B.shape[:-2]) + B.shape[-2:],
                 dtype=np.result_type(L, B))
    for j in range(L.shape[-1]):
        acc = np.einsum("...i,...im->...m", L[..., j, :j], X[..., :j, :])
        X[..., j, :] = (B[..., j, :] - acc) / L[..., j, j, None]
    return X


def _identity_like(M: np.ndarray) -> np.ndarray:
    return np.broadcast_to(np.eye(M.shape[-1], dtype=M.dtype), M.shape)


def factor_from_cov(cov: np.ndarray) -> np.ndarray:
    """``U = L^-T`` with ``L L^T = Sigma`` (lower Cholesky): ``U U^T = Sigma^-1`` (eq. 39)."""
    cov = np.asarray(cov, dtype=np.float64)
    try:
        L = np.linalg.cholesky(cov)
    except np.linalg.LinAlgError:
        raise ValidationError(
            "a covariance matrix is not positive definite; raise reg_covar / min_variance "
            "or check for duplicated or collinear features"
        ) from None
    return np.swapaxes(solve_lower(L, _identity_like(L)), -1, -2)


def cov_from_factor(U: np.ndarray) -> np.ndarray:
    """``Sigma = U^-T U^-1`` via ``V = U^-T`` (a triangular solve), ``Sigma = V V^T``."""
    V = solve_lower(np.swapaxes(U, -1, -2), _identity_like(U))
    cov = V @ np.swapaxes(V, -1, -2)
    return 0.5 * (cov + np.swapaxes(cov, -1, -2))


def floor_eigenvalues(cov: np.ndarray, min_variance: float) -> np.ndarray:
    """``Q max(lambda, v_min) Q^T`` for ``Sigma = Q diag(lambda) Q^T`` (eq. 46).

    The Frobenius-nearest matrix to ``Sigma`` in ``{S : S - v_min I psd}``.
    """
    lam, Q = np.linalg.eigh(cov)
    out = (Q * np.maximum(lam, min_variance)[..., None, :]) @ np.swapaxes(Q, -1, -2)
    return 0.5 * (out + np.swapaxes(out, -1, -2))


def project_factor(log_chol: np.ndarray, min_variance: float) -> np.ndarray:
    """Stored factors (..., D, D) projected onto ``lambda_min(Sigma) >= v_min`` (eq. 46).

    ``lambda_min(Sigma) = 1 / ||U||_2^2 >= 1 / ||U||_F^2``, so a factor with
    ``||U||_F^2 <= 1 / v_min`` is feasible and returned bit for bit; the others are
    checked exactly (eigenvalues of ``Sigma``) and, if infeasible, refactored from
    the eigenvalue-floored covariance.
    """
    A = np.asarray(log_chol)
    U = factor(A)
    frob = np.einsum("...de,...de->...", U, U)
    suspect = np.atleast_1d(frob > 1.0 / min_variance)
    if not suspect.any():
        return A
    stack = A.reshape((-1,) + A.shape[-2:]).copy()
    Us = U.reshape(stack.shape)
    for idx in np.flatnonzero(suspect):
        cov = cov_from_factor(Us[idx])
        if np.linalg.eigvalsh(cov)[0] >= min_variance:
            continue
        stack[idx] = log_factor(factor_from_cov(floor_eigenvalues(cov, min_variance)))
    return stack.reshape(A.shape).astype(A.dtype, copy=False)


def check_log_chol(name: str, A: np.ndarray) -> None:
    """Shape (..., D, D), finite, nothing below the diagonal."""
    if A.ndim < 2 or A.shape[-1] != A.shape[-2]:
        raise ValidationError(f"{name} must be square in its last two axes, got {A.shape}")
    if not np.all(np.isfinite(A)):
        raise ValidationError(f"{name} contains NaN or infinite values")
    if np.any(np.tril(A, -1) != 0):
        raise ValidationError(f"{name} must be upper triangular (entries below the diagonal "
                              "carry no parameter and must be 0)")
