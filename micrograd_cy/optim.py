"""Optimizers and learning-rate schedules over Values, with torch.optim's names and numbers.

SGD, Adam and AdamW run their update loop in C (engine.pyx: optim.pxi); the schedules are
Python, run once a step, and set the optimizer's `lr` as torch.optim.lr_scheduler's do:

    opt = Adam(model.parameters(), lr=0.01)
    schedule = LinearLR(opt, start_factor=1.0, end_factor=0.0, total_iters=steps)
    for step in range(steps):
        loss = ...
        opt.zero_grad(); loss.backward(); opt.step(); schedule.step()

SGD's plain case gives the numbers of `for p in model.parameters(): p.data -= lr * p.grad`.
"""
from __future__ import annotations

import math
from typing import Any, Callable

from micrograd_cy.engine import SGD, Adam, AdamW, Optimizer

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "LRScheduler", "LambdaLR", "LinearLR",
           "CosineAnnealingLR"]


class LRScheduler:
    """The base of the schedules: torch.optim.lr_scheduler.LRScheduler for one optimizer.

    Constructing one takes the optimizer's lr as `base_lrs[0]` and sets its lr for step 0
    (`last_epoch` 0); each step() moves to the next epoch and sets the lr that get_lr()
    gives, with torch's formulas in torch's order (most are recursive: each lr is computed
    from the one before, so the numbers match torch's to the bit).
    """

    _kept: tuple[str, ...] = ("optimizer",)  # not state: load_state_dict leaves them

    def __init__(self, optimizer: Optimizer, last_epoch: int = -1) -> None:
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"{type(self).__name__}: {type(optimizer).__name__} is not an "
                            f"optimizer of micrograd_cy.optim")
        if last_epoch != -1:
            raise ValueError(f"{type(self).__name__}: last_epoch must be -1 (to resume a "
                             f"schedule, load its state_dict())")
        self.optimizer = optimizer
        self.base_lrs: list[float] = [optimizer.lr]
        self.last_epoch = -1
        self._step_count = 0
        self._is_initial = True
        try:
            self.step()
        finally:
            self._is_initial = False

    def get_lr(self) -> list[float]:
        """The lr of epoch `last_epoch` (called by step(), after it counts the epoch)."""
        raise NotImplementedError

    def step(self) -> None:
        """Move to the next epoch and set the optimizer's lr for it (after opt.step())."""
        self.last_epoch += 1
        try:
            lr = self.get_lr()[0]
            self.optimizer.lr = lr  # the optimizer refuses a negative or non-finite lr
        except BaseException:
            self.last_epoch -= 1
            raise
        self._step_count += 1
        self._last_lr = [self.optimizer.lr]

    def get_last_lr(self) -> list[float]:
        """The lr the last step() set, as a list of one (torch: one per parameter group)."""
        return list(self._last_lr)

    def state_dict(self) -> dict[str, Any]:
        """Everything but the optimizer (torch's shape)."""
        return {key: value for key, value in self.__dict__.items() if key not in self._kept}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Take a state_dict() of the same kind of schedule; checked before anything changes."""
        who = f"{type(self).__name__}.load_state_dict"
        if not isinstance(state_dict, dict):
            raise TypeError(f"{who} takes a dict, not {type(state_dict).__name__!r}")
        own = self.state_dict()
        if set(state_dict) != set(own):
            raise ValueError(f"{who}: the keys must be {sorted(own)}, not {sorted(state_dict)}")
        for key in ("last_epoch", "_step_count"):
            value = state_dict[key]
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"{who}: {key} must be a whole number >= 0, not {value!r}")
        for key in ("base_lrs", "_last_lr"):
            value = state_dict[key]
            if not (isinstance(value, list) and len(value) == 1 and _is_rate(value[0])):
                raise ValueError(f"{who}: {key} must be a list of one finite number >= 0, "
                                 f"not {value!r}")
        self._check_state(state_dict, who)
        self.__dict__.update({key: (list(value) if isinstance(value, list) else value)
                              for key, value in state_dict.items() if key not in self._kept})

    def _check_state(self, state_dict: dict[str, Any], who: str) -> None:
        """A schedule's own keys, checked (the base's are checked already)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(last_epoch={self.last_epoch}, lr={self._last_lr[0]})"


def _is_rate(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) \
        and x >= 0


class LambdaLR(LRScheduler):
    """lr = base_lr * lr_lambda(epoch) (torch.optim.lr_scheduler.LambdaLR).

    As torch's, its state_dict keeps lr_lambda's __dict__ only when it is a callable
    object, not a function or a lambda (nor a builtin, which has none).
    """

    _kept = ("optimizer", "lr_lambdas")

    def __init__(self, optimizer: Optimizer, lr_lambda: Callable[[int], float],
                 last_epoch: int = -1) -> None:
        if isinstance(lr_lambda, (list, tuple)):
            if len(lr_lambda) != 1:
                raise ValueError(f"LambdaLR: expected 1 lr_lambda (one parameter group), "
                                 f"got {len(lr_lambda)}")
            lr_lambda = lr_lambda[0]
        if not callable(lr_lambda):
            raise TypeError(f"LambdaLR: lr_lambda must be callable, not "
                            f"{type(lr_lambda).__name__!r}")
        self.lr_lambdas = [lr_lambda]
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        return [base_lr * fn(self.last_epoch) for fn, base_lr in zip(self.lr_lambdas,
                                                                      self.base_lrs)]

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state["lr_lambdas"] = [None if _is_function(fn) or not hasattr(fn, "__dict__")
                               else dict(fn.__dict__) for fn in self.lr_lambdas]
        return state

    def _check_state(self, state_dict: dict[str, Any], who: str) -> None:
        fns = state_dict["lr_lambdas"]
        if not (isinstance(fns, list) and len(fns) == 1 and
                (fns[0] is None or isinstance(fns[0], dict))):
            raise ValueError(f"{who}: lr_lambdas must be [None] or [a dict], not {fns!r}")

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        saved = state_dict["lr_lambdas"][0]
        if saved is not None:
            self.lr_lambdas[0].__dict__.update(saved)


def _is_function(fn: Any) -> bool:
    import types
    return isinstance(fn, types.FunctionType)


class LinearLR(LRScheduler):
    """The lr times a factor going linearly from start_factor (epoch 0) to end_factor (epoch
    total_iters and after): torch.optim.lr_scheduler.LinearLR.

    micrograd's demo schedule, lr * (1 - 0.9 * k / steps), is LinearLR(opt, 1.0, 0.1, steps);
    microgpt's lr * (1 - k / steps) is LinearLR(opt, 1.0, 0.0, steps).
    """

    def __init__(self, optimizer: Optimizer, start_factor: float = 1.0 / 3,
                 end_factor: float = 1.0, total_iters: int = 5, last_epoch: int = -1) -> None:
        if not (isinstance(start_factor, (int, float)) and 0 < start_factor <= 1.0):
            raise ValueError(f"LinearLR: start_factor must be in (0, 1], not {start_factor!r}")
        if not (isinstance(end_factor, (int, float)) and 0 <= end_factor <= 1.0):
            raise ValueError(f"LinearLR: end_factor must be in [0, 1], not {end_factor!r}")
        if not isinstance(total_iters, int) or isinstance(total_iters, bool) or total_iters < 1:
            raise ValueError(f"LinearLR: total_iters must be a whole number >= 1, "
                             f"not {total_iters!r}")
        self.start_factor = start_factor
        self.end_factor = end_factor
        self.total_iters = total_iters
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        lr = self.optimizer.lr
        if self.last_epoch == 0:
            return [lr * self.start_factor]
        if self._is_initial or self.last_epoch > self.total_iters:
            return [lr]
        return [lr * (1.0 + (self.end_factor - self.start_factor) /
                      (self.total_iters * self.start_factor +
                       (self.last_epoch - 1) * (self.end_factor - self.start_factor)))]


class CosineAnnealingLR(LRScheduler):
    """The lr from base_lr down to eta_min along half a cosine over T_max epochs, then back up
    (torch.optim.lr_scheduler.CosineAnnealingLR, its recursive form)."""

    def __init__(self, optimizer: Optimizer, T_max: int, eta_min: float = 0.0,
                 last_epoch: int = -1) -> None:
        if not isinstance(T_max, int) or isinstance(T_max, bool) or T_max < 1:
            raise ValueError(f"CosineAnnealingLR: T_max must be a whole number >= 1, "
                             f"not {T_max!r}")
        if not _is_rate(eta_min):
            raise ValueError(f"CosineAnnealingLR: eta_min must be a finite number >= 0, "
                             f"not {eta_min!r}")
        self.T_max = T_max
        self.eta_min = eta_min
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        lr, base_lr = self.optimizer.lr, self.base_lrs[0]
        if self._is_initial:
            return [lr]
        if self._step_count == 1 and self.last_epoch > 0:
            return [self.eta_min + (base_lr - self.eta_min) *
                    (1 + math.cos(self.last_epoch * math.pi / self.T_max)) / 2]
        if (self.last_epoch - 1 - self.T_max) % (2 * self.T_max) == 0:
            return [lr + (base_lr - self.eta_min) * (1 - math.cos(math.pi / self.T_max)) / 2]
        return [(1 + math.cos(math.pi * self.last_epoch / self.T_max)) /
                (1 + math.cos(math.pi * (self.last_epoch - 1) / self.T_max)) *
                (lr - self.eta_min) + self.eta_min]
