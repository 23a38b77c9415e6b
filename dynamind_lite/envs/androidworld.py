"""AndroidWorld as the paper's MDP: phone tasks on an Android emulator (adapter only).

Beyond Sokoban (issue "Beyond Sokoban"; the paper's third benchmark). This module
turns one AndroidWorld task into the env protocol of ``dynamind_lite.worlds``:

- s_t: the screen's accessibility tree as indexed UI elements, one per line
  (``describe_screen``)::

      [0] TextView "Alarms"
      [1] Button "Add alarm" (clickable)
      [2] EditText hint="Label" (editable, focused)

- a_t: one JSON action, as AndroidWorld's agents write them (``parse_action``)::

      {"action_type": "click", "index": 1}
      {"action_type": "input_text", "text": "Gym", "index": 2}
      {"action_type": "scroll", "direction": "down"}
      {"action_type": "open_app", "app_name": "Clock"}
      {"action_type": "answer", "text": "3 alarms"}

  plus ``navigate_back``, ``navigate_home``, ``keyboard_enter``, ``long_press``
  (index), ``wait`` and ``status`` (``goal_status``: ``complete`` or
  ``infeasible``, which ends the episode). Text that is not such a JSON object,
  or an index that is not on the screen, is an *invalid action*: nothing is sent
  to the phone, and the step costs -0.1 as in every world here.
- R: the paper's reward. Success is the task's own check
  (``task.is_successful(env) == 1.0``), asked after every step: +10 on the step
  that completes the task, -0.1 per other step, 0 when the budget ends it.
- T: the emulator. It has no snapshots: search uses reset-and-replay
  (``search.ReplayState``), which re-initialises the task.

A *device* is anything with AndroidWorld's env interface: ``get_state()``
returning an object with ``ui_elements`` (``representation_utils.UIElement``
or the same attributes) and ``execute_action(json_action.JSONAction)``; a *task*
has ``goal``, ``initialize_task(device)``, ``is_successful(device)`` and
``tear_down(device)``. ``AndroidWorldEnv.from_emulator`` makes both from the
``android_world`` package (installed from its repository, README section
"AndroidWorld"); the tests drive the adapter with a small synthetic phone.

Status: an adapter only. It has never been run against an emulator in this
project, so the README's feature row says so.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from dynamind_lite.envs.sokoban import FAILURE_REWARD, STEP_REWARD, SUCCESS_REWARD

MAX_STEPS = 20
"""Step budget of an AndroidWorld episode (AndroidWorld's tasks allow 10-30 steps by complexity)."""

ACTION_TYPES = ("click", "long_press", "input_text", "keyboard_enter", "navigate_home", "navigate_back",
                "scroll", "open_app", "wait", "status", "answer")
"""The JSON action types of AndroidWorld's ``json_action`` module."""

INDEXED = frozenset({"click", "long_press"})
"""Action types that need the index of an element on the screen."""

SCROLL_DIRECTIONS = ("up", "down", "left", "right")


class InvalidAction(ValueError):
    """A model answer that is not a playable JSON action; the message names why."""


@dataclass(frozen=True)
class Action:
    """One parsed JSON action (the fields of AndroidWorld's ``JSONAction`` that we use)."""

    action_type: str
    index: int | None = None
    text: str | None = None
    direction: str | None = None
    app_name: str | None = None
    goal_status: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """The action as JSON fields, without the unset ones."""
        return {k: v for k, v in self.__dict__.items() if v is not None}


def parse_action(text: str, num_elements: int) -> Action:
    """The action in ``text`` (a JSON object) for a screen of ``num_elements``
    elements; ``InvalidAction`` naming what is wrong otherwise."""
    try:
        data = json.loads(text)
    except (TypeError, json.JSONDecodeError):
        raise InvalidAction(f"not a JSON object: {text!r}") from None
    if not isinstance(data, dict):
        raise InvalidAction(f"not a JSON object: {text!r}")
    kind = data.get("action_type")
    if kind not in ACTION_TYPES:
        raise InvalidAction(f"unknown action_type {kind!r}; expected one of {ACTION_TYPES}")
    index = data.get("index")
    if kind in INDEXED or (kind == "input_text" and index is not None):
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < num_elements:
            raise InvalidAction(f"{kind} needs an index of an element on the screen (0..{num_elements - 1}), "
                                f"got {index!r}")
    if kind in ("input_text", "answer") and not isinstance(data.get("text"), str):
        raise InvalidAction(f"{kind} needs a 'text' string")
    if kind == "scroll" and data.get("direction") not in SCROLL_DIRECTIONS:
        raise InvalidAction(f"scroll needs a direction in {SCROLL_DIRECTIONS}, got {data.get('direction')!r}")
    if kind == "open_app" and not (isinstance(data.get("app_name"), str) and data["app_name"].strip()):
        raise InvalidAction("open_app needs an 'app_name'")
    if kind == "status" and data.get("goal_status") not in ("complete", "infeasible"):
        raise InvalidAction("status needs goal_status 'complete' or 'infeasible'")
    return Action(kind, index if kind in INDEXED or kind == "input_text" else None, data.get("text"),
                  data.get("direction"), data.get("app_name"), data.get("goal_status"))


def _label(element: Any) -> str:
    name = element.class_name.rsplit(".", 1)[-1] if getattr(element, "class_name", None) else "View"
    parts = [name]
    for attribute, shown in (("text", "{}"), ("content_description", "desc={}"), ("hint_text", "hint={}")):
        value = getattr(element, attribute, None)
        if value:
            parts.append(shown.format(json.dumps(str(value), ensure_ascii=False)))
    flags = [flag for attribute, flag in (("is_clickable", "clickable"), ("is_editable", "editable"),
                                          ("is_scrollable", "scrollable"), ("is_checked", "checked"),
                                          ("is_selected", "selected"), ("is_focused", "focused"))
             if getattr(element, attribute, False)]
    return " ".join(parts) + (f" ({', '.join(flags)})" if flags else "")


def describe_screen(ui_elements: list[Any]) -> str:
    """s_t as text: ``[i] Class "text" desc="..." hint="..." (flags)``, one element per
    line in the tree's order; the index is what ``click`` takes."""
    if not ui_elements:
        return "(empty screen)"
    return "\n".join(f"[{i}] {_label(element)}" for i, element in enumerate(ui_elements))


@dataclass
class AndroidWorldEnv:
    """One AndroidWorld task on a device, with the paper's reward.

    Args:
        device: AndroidWorld's env (or anything with its interface, module docstring).
        task: an AndroidWorld task instance (``goal``, ``initialize_task``,
            ``is_successful``, ``tear_down``).
        max_steps: budget T, >= 1.
        to_device_action: turns an ``Action`` into what ``device.execute_action``
            takes (``from_emulator`` passes AndroidWorld's ``JSONAction``; default: the action itself).
    """

    device: Any
    task: Any
    max_steps: int = MAX_STEPS
    to_device_action: Any = None
    actions: list[str | None] = field(default_factory=list)
    observation: str = ""
    success: bool = False
    _elements: list = field(default_factory=list)

    def __post_init__(self):
        if not isinstance(self.max_steps, int) or self.max_steps < 1:
            raise ValueError(f"max_steps must be an integer >= 1, got {self.max_steps!r}")

    @classmethod
    def from_emulator(cls, task_name: str, console_port: int = 5554, adb_path: str = "adb",
                      seed: int = 0, max_steps: int = MAX_STEPS) -> AndroidWorldEnv:
        """The task ``task_name`` of AndroidWorld's registry on the emulator at
        ``console_port`` (README "AndroidWorld": AVD, ``-grpc 8554``, adb).
        ImportError saying how to install ``android_world`` when it is missing."""
        try:
            from android_world import registry
            from android_world.env import env_launcher, json_action
        except ImportError:
            raise ImportError("the AndroidWorld adapter needs the android_world package and an Android emulator: "
                              "git clone https://github.com/google-research/android_world && pip install -e "
                              "android_world (see the README section 'AndroidWorld')") from None
        device = env_launcher.load_and_setup_env(console_port=console_port, emulator_setup=False, adb_path=adb_path)
        tasks = registry.TaskRegistry().get_registry(registry.TaskRegistry.ANDROID_WORLD_FAMILY)
        if task_name not in tasks:
            raise ValueError(f"unknown AndroidWorld task {task_name!r}; e.g. {sorted(tasks)[:5]}")
        task_type = tasks[task_name]
        task = task_type(_seeded_params(task_type, seed))
        return cls(device, task, max_steps, lambda action: json_action.JSONAction(**action.as_dict()))

    # ---- the MDP ------------------------------------------------------------ #

    @property
    def goal(self) -> str:
        return str(self.task.goal)

    def reset(self) -> tuple[str, dict[str, Any]]:
        """(Re-)initialise the task on the device: ``(observation, info)``."""
        self.task.initialize_task(self.device)
        self.actions, self.success = [], False
        self._observe()
        return self.observation, self._info(invalid=False)

    def step(self, answer: str | None) -> tuple[str, float, bool, bool, dict[str, Any]]:
        """Play the JSON action ``answer``: ``(observation, reward, terminated, truncated, info)``."""
        if len(self.actions) >= self.max_steps or self.success:
            raise RuntimeError("the episode is over: call reset()")
        try:
            action = parse_action(answer, len(self._elements))
        except InvalidAction as err:
            action, why = None, str(err)
        self.actions.append(answer)
        if action is not None:
            self.device.execute_action(self.to_device_action(action) if self.to_device_action else action)
            self._observe()
            self.success = float(self.task.is_successful(self.device)) >= 1.0
        gave_up = action is not None and action.action_type == "status"
        terminated = self.success
        truncated = not terminated and (gave_up or len(self.actions) >= self.max_steps)
        reward = SUCCESS_REWARD if terminated else FAILURE_REWARD if truncated else STEP_REWARD
        info = self._info(invalid=action is None)
        if action is None:
            info["invalid_reason"] = why
        return self.observation, reward, terminated, truncated, info

    def close(self) -> None:
        self.task.tear_down(self.device)

    def _observe(self) -> None:
        self._elements = list(self.device.get_state().ui_elements)
        self.observation = describe_screen(self._elements)

    def _info(self, invalid: bool) -> dict[str, Any]:
        return {"goal": self.goal, "invalid": invalid, "success": self.success, "steps": len(self.actions)}


def _seeded_params(task_type: Any, seed: int) -> dict:
    """AndroidWorld draws task parameters from the global ``random`` module: seed it for this call."""
    import random

    state = random.getstate()
    random.seed(seed)
    try:
        return task_type.generate_random_params()
    finally:
        random.setstate(state)
