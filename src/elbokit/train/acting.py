"""The base of learners that make their own data: they step environments and replay what they saw.

An ``ActingLearner`` owns ``env`` (n environments stepped at once: ``reset``, ``step``,
``state``/``load_state``, ``continues``, ``close``), ``replay`` (a buffer with
``state``/``load_state``), ``obs`` (the environments' current observations, or None before the
first step) and whatever per-environment tensors (``carried``) and counters (``counters``) its
acting keeps. They are its checkpoint's extra state, so a resumed run acts on exactly where the
interrupted one stopped: the replay, the simulators, the observations, the carried tensors and the
counters. Where the environments cannot restore their simulators (``env.continues`` is False),
their episodes start again (``restart``).
"""

from __future__ import annotations

import torch

from elbokit.train.learner import Learner

__all__ = ["ActingLearner"]


class ActingLearner(Learner):
    """A learner with environments, a replay and acting state saved with every checkpoint."""

    carried: tuple[str, ...] = ()  # tensor attributes kept per environment (recurrent state, ...)
    counters: tuple[str, ...] = ()  # int or float attributes (transitions, seconds, ...)

    env: object
    replay: object
    obs: torch.Tensor | None

    def extra_state(self) -> tuple[dict[str, torch.Tensor], dict]:
        rt, rm = self.replay.state()
        et, em = self.env.state()
        tensors = {f"replay.{k}": v for k, v in rt.items()}
        tensors.update({f"env.{k}": v for k, v in et.items()})
        for name in self.carried:
            tensors[name] = getattr(self, name).detach().cpu().clone()
        if self.obs is not None:
            tensors["obs"] = self.obs.clone()
        meta = {"replay": rm, "env": em, **{name: getattr(self, name) for name in self.counters}}
        return tensors, meta

    def load_extra_state(self, tensors: dict[str, torch.Tensor], meta: dict) -> None:
        def part(prefix):
            return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}

        self.replay.load_state(part("replay."), meta["replay"])
        self.env.load_state(part("env."), meta["env"])
        for name in self.carried:  # on the device and in the dtype the learner keeps it
            now = getattr(self, name)
            setattr(self, name, tensors[name].to(device=now.device, dtype=now.dtype).clone())
        for name in self.counters:
            setattr(self, name, type(getattr(self, name))(meta[name]))
        if "obs" in tensors and self.env.continues:
            self.obs = tensors["obs"].clone()  # the point task, a classic-control simulator
        else:  # a simulator whose state cannot be saved: its episodes start again
            self.restart()

    def restart(self) -> None:
        """Start every environment's episode again at the next step (what that resets of the
        carried state is the subclass's: the default drops the observations)."""
        self.obs = None

    def close(self) -> None:
        self.env.close()
