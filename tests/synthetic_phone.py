"""A synthetic phone with AndroidWorld's env interface, for the adapter's tests.

One app (Clock) whose screens are accessibility trees of plain UI elements, and
one task in AndroidWorld's shape: create an alarm with a given label. Nothing
here pretends to be an emulator; it gives the adapter real trees to read and a
state that its actions change.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Element:
    """The attributes of ``android_world``'s ``representation_utils.UIElement`` that the adapter reads."""

    text: str | None = None
    content_description: str | None = None
    class_name: str | None = "android.widget.TextView"
    hint_text: str | None = None
    is_clickable: bool = False
    is_editable: bool = False
    is_scrollable: bool = False
    is_checked: bool = False
    is_selected: bool = False
    is_focused: bool = False


@dataclass
class State:
    ui_elements: list[Element]


@dataclass
class SyntheticPhone:
    """Home screen -> Clock (alarm list) -> new alarm (label field, Save)."""

    screen: str = "home"
    alarms: list[str] = field(default_factory=list)
    label: str = ""
    executed: list = field(default_factory=list)

    def get_state(self, wait_to_stabilize: bool = False) -> State:
        if self.screen == "home":
            return State([Element("Home"), Element(content_description="Clock", class_name="android.widget.ImageView",
                                                   is_clickable=True)])
        if self.screen == "clock":
            return State([Element("Alarms"), *[Element(f"Alarm: {a}") for a in self.alarms],
                          Element("Add alarm", class_name="android.widget.Button", is_clickable=True)])
        return State([Element(self.label or None, class_name="android.widget.EditText", hint_text="Label",
                              is_editable=True, is_focused=True),
                      Element("Save", class_name="android.widget.Button", is_clickable=True)])

    def execute_action(self, action) -> None:
        self.executed.append(action)
        elements = self.get_state().ui_elements
        if action.action_type == "open_app" and action.app_name.lower() == "clock":
            self.screen = "clock"
        elif action.action_type == "navigate_home":
            self.screen = "home"
        elif action.action_type == "click":
            target = elements[action.index]
            if self.screen == "home" and target.content_description == "Clock":
                self.screen = "clock"
            elif self.screen == "clock" and target.text == "Add alarm":
                self.screen, self.label = "edit", ""
            elif self.screen == "edit" and target.text == "Save":
                self.alarms.append(self.label)
                self.screen = "clock"
        elif action.action_type == "input_text" and self.screen == "edit":
            self.label = action.text


@dataclass
class CreateAlarmTask:
    """AndroidWorld's task shape: ``goal``, ``initialize_task``, ``is_successful``, ``tear_down``."""

    label: str = "Gym"

    @property
    def goal(self) -> str:
        return f"Create an alarm labelled {self.label}."

    def initialize_task(self, phone: SyntheticPhone) -> None:
        phone.screen, phone.alarms, phone.label = "home", [], ""

    def is_successful(self, phone: SyntheticPhone) -> float:
        return 1.0 if self.label in phone.alarms else 0.0

    def tear_down(self, phone: SyntheticPhone) -> None:
        phone.alarms.clear()
