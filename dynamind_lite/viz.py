"""Pictures and widgets for the notebooks.

* boards as images (:func:`show_board`, :func:`show_boards`, drawn by
  ``envs.render.board_image``),
  a playable board (:func:`play`, :class:`SokobanPlayer`) and policy returns
  (:func:`plot_returns`), introduced in ``notebooks/01_mdp_sokoban.ipynb``;
* search trees (:func:`draw_tree`, :func:`tree_explorer`), introduced in
  ``notebooks/02_dfs_search_tree.ipynb``;
* SimRollout's plan vs reality (:class:`PlanExplorer`), introduced in
  ``notebooks/05_simrollout.ipynb``, and RL curves (:func:`plot_rl_curves`),
  introduced in ``notebooks/06_dyna_grpo.ipynb``.

Everything draws with matplotlib (any backend, ``Agg`` included: headless
papermill runs render the figures into the executed notebook) and ipywidgets
(in JupyterLab and Colab the buttons work; under papermill the widgets are only
rendered, nobody clicks them). Pictures only: nothing here changes the
method, so there is no departure from the paper to list.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import numpy as np

from dynamind_lite.envs.render import board_image
from dynamind_lite.envs.sokoban import SokobanEnv
from dynamind_lite.response import ACTIONS

# =========================================================================== #
# Boards as images (the picture itself: ``envs.render.board_image``)
# =========================================================================== #


def _png(image: np.ndarray) -> bytes:
    import matplotlib.image

    buffer = io.BytesIO()
    matplotlib.image.imsave(buffer, image, format="png")
    return buffer.getvalue()


def show_board(grid: str, ax: Any = None, title: str | None = None, tile: int = 24) -> Any:
    """Draw ``grid`` on a matplotlib axes (a new figure when ``ax`` is None) and
    return the axes (``notebooks/01_mdp_sokoban.ipynb``)."""
    import matplotlib.pyplot as plt

    if ax is None:
        rows = grid.strip("\n").split("\n")
        _, ax = plt.subplots(figsize=(0.4 * len(rows[0]) + 0.4, 0.4 * len(rows) + 0.6))
    ax.imshow(board_image(grid, tile), interpolation="nearest")
    ax.set_axis_off()
    if title is not None:
        ax.set_title(title, fontsize=9)
    return ax


def show_boards(grids: Sequence[str], titles: Sequence[str] | None = None, tile: int = 24) -> Any:
    """Draw several boards in one row and return the figure (``notebooks/01_mdp_sokoban.ipynb``)."""
    import matplotlib.pyplot as plt

    grids = list(grids)
    if not grids:
        raise ValueError("show_boards needs at least one grid")
    if titles is not None and len(titles) != len(grids):
        raise ValueError(f"got {len(titles)} titles for {len(grids)} grids")
    fig, axes = plt.subplots(1, len(grids), figsize=(2.2 * len(grids), 2.6), squeeze=False)
    for i, (ax, grid) in enumerate(zip(axes[0], grids)):
        show_board(grid, ax=ax, title=None if titles is None else titles[i], tile=tile)
    fig.tight_layout()
    return fig


def plot_returns(returns: dict[str, dict[str, Sequence[float]]], ax: Any = None) -> Any:
    """Bar chart of mean episode return per level set and policy, every episode as a
    dot, the mean written on each bar; returns the axes (``notebooks/01_mdp_sokoban.ipynb``).

    returns: ``{level set: {policy: [G of each episode]}}``, e.g.
        ``{"ID": {"random": [...], "solver": [...]}, "OOD": {...}}``.
    """
    import matplotlib.pyplot as plt

    if not returns or not all(returns.values()):
        raise ValueError("plot_returns needs at least one level set with at least one policy")
    policies = list(dict.fromkeys(p for by_policy in returns.values() for p in by_policy))
    if ax is None:
        _, ax = plt.subplots(figsize=(1.6 + 1.4 * len(returns) * len(policies) / 2, 3.2))
    width = 0.8 / len(policies)
    rng = np.random.default_rng(0)  # horizontal jitter of the dots only
    for j, policy in enumerate(policies):
        for i, by_policy in enumerate(returns.values()):
            values = np.asarray(by_policy.get(policy, []), dtype=float)
            if values.size == 0:
                continue
            x = i + (j - (len(policies) - 1) / 2) * width
            ax.bar(x, values.mean(), width * 0.9, color=f"C{j}", alpha=0.6, label=policy if i == 0 else None)
            ax.scatter(x + rng.uniform(-width / 4, width / 4, values.size), values, s=6, color=f"C{j}", zorder=3)
            ax.text(x, max(values.mean(), 0) + 0.3, f"{values.mean():.2f}", ha="center", fontsize=8)
    ax.axhline(0, color="0.3", linewidth=0.8)
    ax.set_xticks(range(len(returns)), list(returns))
    ax.set_ylabel("episode return G")
    ax.legend(fontsize=8, loc="center")
    return ax


# =========================================================================== #
# A playable board
# =========================================================================== #


class SokobanPlayer:
    """Play a level by hand with buttons (``notebooks/01_mdp_sokoban.ipynb``).

    Up / Down / Left / Right buttons call ``SokobanEnv.step``; Reset starts the
    level again. The board picture redraws in an ``Output`` widget, and a status
    line shows the step count t, the last reward r_t, the return G = sum r_t and
    whether the episode is done (solved or out of steps). Display the player
    (``display(player)`` or as the last expression of a cell) to use it.

    Attributes: ``env`` (the SokobanEnv), ``buttons`` (action -> Button, plus
    ``"Reset"``), ``board`` (the Output widget), ``status`` (an HTML widget),
    ``widget`` (the whole box), ``rewards`` (this episode's rewards), ``info``
    (the last step's info dict).
    """

    def __init__(self, grid: str, max_steps: int = 30, tile: int = 32):
        import ipywidgets as widgets


        self.grid = grid
        self.tile = tile
        self.env = SokobanEnv(max_steps=max_steps)
        self.buttons = {name: widgets.Button(description=name, layout=widgets.Layout(width="70px"))
                        for name in (*ACTIONS, "Reset")}
        for name in ACTIONS:
            self.buttons[name].on_click(lambda _button, action=name: self.step(action))
        self.buttons["Reset"].on_click(lambda _button: self.reset())
        self.board = widgets.Output()
        self.status = widgets.HTML()
        blank = widgets.Label(layout=widgets.Layout(width="70px"))
        pad = widgets.VBox([widgets.HBox([blank, self.buttons["Up"], blank]),
                            widgets.HBox([self.buttons["Left"], self.buttons["Down"], self.buttons["Right"]]),
                            widgets.HBox([self.buttons["Reset"]])])
        self.widget = widgets.VBox([self.board, self.status, pad])
        self.reset()

    def reset(self) -> None:
        """Start the level again."""
        self.env.reset(options={"grid": self.grid})
        self.rewards: list[float] = []
        self.info: dict = {}
        self._redraw()

    def step(self, action: str) -> None:
        """Take ``action``; does nothing once the episode is done (press Reset)."""
        if self.env.done:
            return
        _, reward, _, _, self.info = self.env.step(action)
        self.rewards.append(reward)
        self._redraw()

    @property
    def episode_return(self) -> float:
        """G = sum of this episode's rewards."""
        return float(sum(self.rewards))

    def _redraw(self) -> None:
        from IPython.display import Image

        self.board.outputs = ()
        self.board.append_display_data(Image(data=_png(board_image(self.env.render(), self.tile)), format="png"))
        last = f"{self.rewards[-1]:+.1f}" if self.rewards else "-"
        if self.env.done:
            outcome = "<b style='color:green'>solved!</b>" if self.info.get("success") else \
                "<b style='color:#c00'>out of steps</b>"
        else:
            outcome = "playing"
        self.status.value = (f"step {len(self.rewards)}/{self.env.max_steps} &nbsp; last reward {last} &nbsp; "
                             f"return {self.episode_return:+.1f} &nbsp; {outcome}")

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)


def play(grid: str, max_steps: int = 30) -> SokobanPlayer:
    """A :class:`SokobanPlayer` for ``grid`` (``notebooks/01_mdp_sokoban.ipynb``);
    make it the last expression of a cell to show it."""
    return SokobanPlayer(grid, max_steps=max_steps)


class TextGamePlayer:
    """Play a text game by hand (``notebooks/08_alfworld.ipynb``): pick one of the
    admissible commands, press Play; Reset starts the game again.

    The observation and the task show in an ``Output`` widget, with the status line
    of ``SokobanPlayer`` (step t, last reward r_t, return G, done). ``env`` is any
    text-world env with ``reset()``, ``step(command)`` and ``legal_actions()``
    (``envs.alfworld.AlfWorldEnv``), already reset on its game.
    """

    def __init__(self, env: Any):
        import ipywidgets as widgets

        self.env = env
        self.commands = widgets.Dropdown(layout=widgets.Layout(width="420px"))
        self.buttons = {"Play": widgets.Button(description="Play"), "Reset": widgets.Button(description="Reset")}
        self.buttons["Play"].on_click(lambda _button: self.step(self.commands.value))
        self.buttons["Reset"].on_click(lambda _button: self.reset())
        self.text = widgets.Output()
        self.status = widgets.HTML()
        self.widget = widgets.VBox([self.text, self.status,
                                    widgets.HBox([self.commands, self.buttons["Play"], self.buttons["Reset"]])])
        self.reset()

    def reset(self) -> None:
        """Start the game again."""
        self.observation, self.info = self.env.reset()
        self.rewards: list[float] = []
        self._redraw()

    def step(self, command: str) -> None:
        """Play ``command``; does nothing once the episode is done (press Reset)."""
        if self.env.done:
            return
        self.observation, reward, _, _, self.info = self.env.step(command)
        self.rewards.append(reward)
        self._redraw()

    def _redraw(self) -> None:
        self.commands.options = self.env.legal_actions()
        self.text.outputs = ()
        self.text.append_stdout(f"Task: {self.env.task}\n{self.observation}\n")
        last = f"{self.rewards[-1]:+.1f}" if self.rewards else "-"
        outcome = ("<b style='color:green'>done!</b>" if self.info.get("success") else
                   "<b style='color:#c00'>out of steps</b>" if self.env.done else "playing")
        self.status.value = (f"step {len(self.rewards)}/{self.env.max_steps} &nbsp; last reward {last} &nbsp; "
                             f"return {sum(self.rewards):+.1f} &nbsp; {outcome}")

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)


# =========================================================================== #
# Search trees
# =========================================================================== #


def _layout(root: Any) -> dict[int, tuple[float, int]]:
    """(x, depth) of every node: leaves at 0, 1, 2, ... left to right, parents
    centred over their children."""
    where: dict[int, tuple[float, int]] = {}
    next_leaf = [0.0]

    def place(node: Any, depth: int) -> float:
        if node.children:
            x = float(np.mean([place(child, depth + 1) for child in node.children]))
        else:
            x, next_leaf[0] = next_leaf[0], next_leaf[0] + 1
        where[id(node)] = (x, depth)
        return x

    place(root, 0)
    return where


def draw_tree(tree: Any, ax: Any = None, tile: int = 8, boards: bool = True) -> Any:
    """Draw a ``dynamind_lite.search.SearchTree`` and return the axes
    (``notebooks/02_dfs_search_tree.ipynb``).

    The root (the current state s) is on top, depth grows downwards. Each node
    shows its board (a small picture, or the text with ``boards=False``); each
    edge is labelled with the action a_k and the reward r_k of that transition.
    A green frame marks a node that solved the level, a red one a node whose
    episode ended unsolved; rollout leaves that did not end show their
    bootstrap value V(s_leaf).
    """
    import matplotlib.pyplot as plt
    from matplotlib.offsetbox import AnnotationBbox, OffsetImage, TextArea

    where = _layout(tree.root)
    leaves = max(x for x, _ in where.values()) + 1
    depth = max(d for _, d in where.values())
    if ax is None:
        _, ax = plt.subplots(figsize=(max(4.0, 1.9 * leaves), 1.9 * (depth + 1) + 0.4))

    def visit(node: Any) -> None:
        x, d = where[id(node)]
        for child in node.children:
            cx, cd = where[id(child)]
            ax.plot([x, cx], [-d, -cd], color="0.6", zorder=1)
            ax.text((x + cx) / 2, -(d + cd) / 2, f"{child.action}\nr={child.reward:+.1f}", ha="center",
                    va="center", fontsize=7, zorder=3, bbox={"boxstyle": "round", "fc": "white", "ec": "0.8"})
            visit(child)
        frame = "green" if node.success else ("red" if node.done else "0.5")
        if boards:
            content = OffsetImage(board_image(node.observation, tile), zoom=1.0)
        else:
            content = TextArea(node.observation, textprops={"family": "monospace", "fontsize": 6})
        ax.add_artist(AnnotationBbox(content, (x, -d), frameon=True, pad=0.2, zorder=2,
                                     bboxprops={"edgecolor": frame, "linewidth": 2 if node.done else 1}))
        if node.value is not None:
            ax.text(x, -d - 0.42, f"V={node.value:.2f}", ha="center", va="top", fontsize=7, color="navy")

    visit(tree.root)
    ax.set_xlim(-0.6, leaves - 0.4)
    ax.set_ylim(-depth - 0.7, 0.5)
    ax.set_axis_off()
    ax.set_title(f"search tree: b={tree.b}, d={tree.d}, {tree.num_nodes()} nodes, {tree.env_steps} env steps",
                 fontsize=9)
    return ax


class TreeExplorer:
    """Walk a search tree node by node (``notebooks/02_dfs_search_tree.ipynb``).

    One button per child (labelled with its action) goes down, "Up" goes to the
    parent, "Root" back to the top. The panel shows the node's board, the path
    of actions from the root, the reward of the last transition, the return
    along the path, done/success, and V(s) where the node has one.

    Attributes: ``path`` (the nodes from the root to the current one), ``node``
    (the current one), ``children`` (a box of child Buttons), ``up_button``,
    ``root_button``, ``board`` (Output), ``status`` (HTML), ``widget``.
    """

    def __init__(self, tree: Any, tile: int = 28):
        import ipywidgets as widgets

        self.tree = tree
        self.tile = tile
        self.path = [tree.root]
        self.board = widgets.Output()
        self.status = widgets.HTML()
        self.children = widgets.HBox()
        self.up_button = widgets.Button(description="Up (parent)")
        self.root_button = widgets.Button(description="Root")
        self.up_button.on_click(lambda _button: self.up())
        self.root_button.on_click(lambda _button: self.to_root())
        self.widget = widgets.VBox([self.board, self.status, self.children,
                                    widgets.HBox([self.up_button, self.root_button])])
        self._redraw()

    @property
    def node(self) -> Any:
        return self.path[-1]

    def down(self, index: int) -> None:
        """Go to the ``index``-th child of the current node."""
        children = self.node.children
        if not 0 <= index < len(children):
            raise IndexError(f"node has {len(children)} children, no child {index}")
        self.path.append(children[index])
        self._redraw()

    def go(self, action: str) -> None:
        """Go to the child reached by ``action``."""
        actions = [child.action for child in self.node.children]
        if action not in actions:
            raise ValueError(f"no child by action {action!r} here; children: {actions}")
        self.down(actions.index(action))

    def up(self) -> None:
        """Go to the parent (stays at the root)."""
        if len(self.path) > 1:
            self.path.pop()
        self._redraw()

    def to_root(self) -> None:
        del self.path[1:]
        self._redraw()

    def _redraw(self) -> None:
        import ipywidgets as widgets
        from IPython.display import Image

        node = self.node
        self.board.outputs = ()
        self.board.append_display_data(Image(data=_png(board_image(node.observation, self.tile)), format="png"))
        actions = " ".join(n.action for n in self.path[1:]) or "(root: the current state s)"
        path_return = sum(n.reward for n in self.path[1:])
        parts = [f"path: {actions}", f"depth {len(self.path) - 1}"]
        if len(self.path) > 1:
            parts += [f"r = {node.reward:+.1f}", f"sum r = {path_return:+.1f}"]
        if node.done:
            parts.append("episode ended: " + ("solved" if node.success else "unsolved"))
        if node.value is not None:
            parts.append(f"V(s) = {node.value:.2f}, rollout value = {path_return + node.value:.2f}")
        self.status.value = " &nbsp;|&nbsp; ".join(parts)
        buttons = []
        for i, child in enumerate(node.children):
            button = widgets.Button(description=f"{child.action} ({child.reward:+.1f})")
            button.on_click(lambda _button, index=i: self.down(index))
            buttons.append(button)
        self.children.children = tuple(buttons)
        self.up_button.disabled = self.root_button.disabled = len(self.path) == 1

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)


def tree_explorer(tree: Any) -> TreeExplorer:
    """A :class:`TreeExplorer` for ``tree`` (``notebooks/02_dfs_search_tree.ipynb``);
    make it the last expression of a cell to show it."""
    return TreeExplorer(tree)


# --------------------------------------------------------------------------- #
# SimRollout and RL (notebooks 05 and 06)
# --------------------------------------------------------------------------- #


def _plan_rollout_states(response: str, plan: Sequence[str]) -> list[str | None]:
    """The states ``response`` simulated along ``plan`` (its rollout whose actions start
    with the plan), one per plan action, None where it wrote none."""
    from dynamind_lite.response import parse_rollouts

    for rollout in parse_rollouts(response):
        if list(rollout.actions[:len(plan)]) == list(plan):
            grids = [grid or None for _, grid in rollout.states]
            return (grids + [None] * len(plan))[:len(plan)]
    return [None] * len(plan)


class PlanExplorer:
    """Step through one SimRollout decision, plan vs reality (``notebooks/05_simrollout.ipynb``).

    For k = 1..d the panel shows, side by side: the state the first response
    simulated after a^_k, the real state s'_{t+k} the env reached, and the state
    the refined response simulated for the same plan prefix. A slider picks k.

    Args: ``observation`` s_t; ``refinement`` a ``simrollout.Refinement`` that refined;
    ``refined_response`` the text of a^refine.
    Attributes: ``k`` (the shown depth), ``slider``, ``board`` (Output), ``widget``.
    """

    def __init__(self, observation: str, refinement: Any, refined_response: str, tile: int = 22):
        import ipywidgets as widgets

        if not refinement.futures:
            raise ValueError("this decision executed no plan (status missing): nothing to compare")
        self.observation = observation
        self.actions = [a for a, _ in refinement.futures]
        self.real = [s for _, s in refinement.futures]
        self.first = _plan_rollout_states(refinement.first_response, self.actions)
        self.refined = _plan_rollout_states(refined_response, self.actions)
        self.tile = tile
        self.k = 1
        self.board = widgets.Output()
        self.slider = widgets.IntSlider(value=1, min=1, max=len(self.actions), description="k")
        self.slider.observe(lambda change: self.show(change["new"]), names="value")
        self.widget = widgets.VBox([self.slider, self.board])
        self.show(1)

    def show(self, k: int) -> None:
        """Show depth k (1-based)."""
        import matplotlib.pyplot as plt

        if not 1 <= k <= len(self.actions):
            raise IndexError(f"k must be in 1..{len(self.actions)}, got {k}")
        self.k = k
        prefix = " ".join(self.actions[:k])
        panels = [("s_t", self.observation), (f"first response: after {prefix}", self.first[k - 1]),
                  (f"REAL after {prefix}", self.real[k - 1]), (f"refined: after {prefix}", self.refined[k - 1])]
        with self.board:
            self.board.clear_output(wait=True)
            fig, axes = plt.subplots(1, 4, figsize=(12, 3.2))
            for ax, (title, grid) in zip(axes, panels):
                if grid is None:
                    ax.text(0.5, 0.5, "(not simulated)", ha="center", va="center")
                    ax.axis("off")
                    ax.set_title(title, fontsize=9)
                    continue
                mark = "" if title.startswith(("s_t", "REAL")) else ("  ✓" if grid == self.real[k - 1] else "  ✗")
                show_board(grid, ax=ax, title=title + mark, tile=self.tile)
            plt.show()

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)


def plot_rl_curves(metrics: dict[str, Sequence[dict]], keys: Sequence[str] = ("success", "sim_score", "mean_return",
                                                                                "kl", "tokens_per_step")) -> Any:
    """One panel per metric, one line per method, against the RL iteration
    (``notebooks/06_dyna_grpo.ipynb``). ``metrics``: method -> rows of ``rl_metrics.jsonl``.
    Simulation-improvement iterations are drawn as hollow markers. Returns the Figure."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(keys), figsize=(3.3 * len(keys), 3))
    for ax, key in zip(axes, keys):
        for method, rows in metrics.items():
            xs = [row["iteration"] for row in rows]
            line, = ax.plot(xs, [row.get(key, float("nan")) for row in rows], label=method)
            sim = [row for row in rows if row.get("phase") == "simulation"]
            ax.plot([r["iteration"] for r in sim], [r.get(key, float("nan")) for r in sim], "o", mfc="none",
                    color=line.get_color())
        ax.set_title(key)
        ax.set_xlabel("iteration")
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.tight_layout()
    return fig


def plot_success_vs_sim(points: Sequence[tuple[str, int, float, float]], r: float | None) -> Any:
    """Success (ID) against Sim Score (ID), one marker per (method, seed), with Pearson r in
    the title (``notebooks/07_results.ipynb``; ``results.success_sim_points``). Returns the Figure."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 3.5))
    for method in dict.fromkeys(p[0] for p in points):
        mine = [p for p in points if p[0] == method]
        ax.plot([p[2] for p in mine], [100 * p[3] for p in mine], "o", label=method, alpha=0.8)
    ax.set_xlabel("Sim Score (ID)")
    ax.set_ylabel("success ID %")
    ax.set_title("success vs Sim Score" + ("" if r is None else f"  (Pearson r = {r:.2f})"))
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def plot_success_by_length(by_length: dict[str, dict[int, list[int]]]) -> Any:
    """Success % per optimal solution length, one line per method (``results.success_by_length``);
    the number of levels per length is printed under the axis. Returns the Figure."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    for method, counts in by_length.items():
        lengths = sorted(counts)
        ax.plot(lengths, [100 * counts[n][0] / counts[n][1] for n in lengths], "o-", label=method)
    ax.set_xlabel("optimal solution length (moves), ID and OOD test levels")
    ax.set_ylabel("success %")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def plot_tokens_per_step(summary: Sequence[dict[str, Any]]) -> Any:
    """Generated tokens per step on ID, mean over seeds with the seeds' range as error bars
    (``results.summarise``). Returns the Figure."""
    import matplotlib.pyplot as plt

    rows = [row for row in summary if row.get("mean_gen_tokens_id")]
    fig, ax = plt.subplots(figsize=(5.5, 3))
    means = [row["mean_gen_tokens_id"]["mean"] for row in rows]
    low = [max(0.0, m - row["mean_gen_tokens_id"]["min"]) for m, row in zip(means, rows)]  # >= 0 despite rounding
    high = [max(0.0, row["mean_gen_tokens_id"]["max"] - m) for m, row in zip(means, rows)]
    ax.bar(range(len(rows)), means, yerr=[low, high], capsize=3)
    ax.set_xticks(range(len(rows)), [row["method"] for row in rows], rotation=20, fontsize=7)
    ax.set_ylabel("tokens per step (ID)")
    fig.tight_layout()
    return fig
