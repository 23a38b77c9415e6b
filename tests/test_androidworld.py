"""The AndroidWorld adapter on synthetic accessibility trees: screen text, JSON
actions, the paper's reward, invalid answers, and search by reset-and-replay."""

from __future__ import annotations

import random

import pytest

from dynamind_lite.envs.androidworld import AndroidWorldEnv, InvalidAction, describe_screen, parse_action
from dynamind_lite.envs.sokoban import STEP_REWARD, SUCCESS_REWARD
from tests.synthetic_phone import CreateAlarmTask, Element, SyntheticPhone

SOLUTION = ['{"action_type": "open_app", "app_name": "Clock"}', '{"action_type": "click", "index": 1}',
            '{"action_type": "input_text", "text": "Gym", "index": 0}', '{"action_type": "click", "index": 1}']


@pytest.fixture
def env():
    return AndroidWorldEnv(SyntheticPhone(), CreateAlarmTask("Gym"), max_steps=6)


def test_screen_is_indexed_ui_elements_with_their_flags():
    text = describe_screen([Element("Alarms"), Element("Add alarm", class_name="android.widget.Button",
                                                       is_clickable=True),
                            Element(None, class_name="android.widget.EditText", hint_text="Label", is_editable=True,
                                    is_focused=True)])
    assert text.splitlines() == ['[0] TextView "Alarms"', '[1] Button "Add alarm" (clickable)',
                                 '[2] EditText hint="Label" (editable, focused)']
    assert describe_screen([]) == "(empty screen)"


def test_solution_earns_the_papers_reward_from_the_tasks_own_check(env):
    observation, info = env.reset()
    assert info["goal"] == "Create an alarm labelled Gym." and "desc=\"Clock\"" in observation
    rewards = []
    for answer in SOLUTION:
        observation, reward, terminated, truncated, info = env.step(answer)
        rewards.append(reward)
    assert rewards == [STEP_REWARD] * 3 + [SUCCESS_REWARD] and terminated and not truncated and info["success"]
    assert '"Alarm: Gym"' in observation


@pytest.mark.parametrize("answer,why", [
    ("click the button", "not a JSON object"),
    ('{"action_type": "click", "index": 9}', "index of an element"),
    ('{"action_type": "click", "index": true}', "index of an element"),
    ('{"action_type": "fly"}', "unknown action_type"),
    ('{"action_type": "scroll", "direction": "sideways"}', "direction"),
    ('{"action_type": "answer"}', "'text' string"),
    ("[1, 2]", "not a JSON object"),
    (None, "not a JSON object"),
])
def test_malformed_answers_are_invalid_steps_that_never_reach_the_phone(env, answer, why):
    observation, _ = env.reset()
    after, reward, terminated, truncated, info = env.step(answer)
    assert info["invalid"] and why in info["invalid_reason"]
    assert reward == STEP_REWARD and not terminated and not truncated
    assert after == observation and env.device.executed == []


def test_giving_up_or_the_budget_ends_the_episode_with_zero(env):
    env.reset()
    *_, reward, terminated, truncated, _ = env.step('{"action_type": "status", "goal_status": "infeasible"}')
    assert (reward, terminated, truncated) == (0.0, False, True)
    env.reset()
    rewards = [env.step('{"action_type": "wait"}')[1] for _ in range(6)]
    assert rewards == [STEP_REWARD] * 5 + [0.0]
    with pytest.raises(RuntimeError, match="episode is over"):
        env.step('{"action_type": "wait"}')


def test_parsed_actions_keep_only_their_fields():
    action = parse_action('{"action_type": "input_text", "text": "Gym", "index": 0, "x": 5}', 2)
    assert action.as_dict() == {"action_type": "input_text", "index": 0, "text": "Gym"}
    with pytest.raises(InvalidAction):
        parse_action('{"action_type": "status", "goal_status": "done"}', 1)


def test_search_runs_on_the_phone_by_reset_and_replay(env):
    from dynamind_lite.search import RandomPolicy, ReplayState, build_tree

    class GoalValue:  # V(s): 10 when the alarm list shows the label, else 9 (a value function on screen text)
        name = "goal"

        def __call__(self, observation):
            return 10.0 if '"Alarm: Gym"' in observation else 9.0

    env.reset()
    actions = tuple(SOLUTION[:2]) + ('{"action_type": "navigate_home"}',)
    tree = build_tree(env, ReplayState({}, (SOLUTION[0],)), RandomPolicy(actions), b=3, d=2,
                      value_fn=GoalValue(), rng=random.Random(0), actions=actions)
    assert len(tree.rollouts()) == 3 and {r.actions[0] for r in tree.rollouts()} == set(actions)
    assert tree.env_steps > 6  # every transition was reached by replaying from a reset


def test_from_emulator_without_android_world_says_how_to_install_it():
    with pytest.raises(ImportError, match="android_world package and an Android emulator"):
        AndroidWorldEnv.from_emulator("SystemWifiTurnOn")
