"""Mini-ALFWorld: seeded, offline ALFWorld-style household games (``.tw-pddl``).

ALFWorld's text games are PDDL problems that TextWorld plays with ALFWorld's own
domain (``alfred.pddl``) and surface grammar (``alfred.twl2``), both shipped in the
``alfworld`` wheel. The official games come from ALFRED's THOR scenes
(``alfworld-download``, not reachable offline); this module samples small
synthetic scenes instead: one room (kitchen, living room or bedroom) of 6-15
receptacles, the task's target objects and 4-10 distractors, with each goal
written the way ALFWorld's goal library writes it, for its six task types:
pick-and-place, examine in light, clean, heat, cool, and pick two.

A game here is a compact JSON-ready *spec*: ``id``, ``task_type``, ``task`` (the
goal text), ``pddl_problem``, ``targets``. ``tw_pddl(spec)`` adds the domain and
the grammar (with the goal text) to make the ``.tw-pddl`` dict TextWorld loads
(``envs.alfworld.AlfWorldEnv``). The level files of ``data/alfworld/`` are specs,
remade byte for byte by ``scripts/make_mini_alfworld.py``.

Splits. ALFWorld's ``valid_unseen`` differs from its training games by "object,
receptacle and layout combinations never seen in training"; its object classes
mostly occur in training too. Every game here has a freshly sampled layout, and:

- ``id_train``, ``id_test``: tasks about any object type but the
  ``OOD_OBJECT_TYPES``, never with a held-out (object, destination) pair (``held_out_pair``);
- ``ood_test`` (as ``valid_unseen``): tasks whose (object, destination) pair is
  a held-out pair: object and receptacle types the ID tasks ask
  for, in combinations no ID task asks for;
- ``ood_types_test`` (stricter): tasks about the ``OOD_OBJECT_TYPES``, which no ID
  task asks for (they lie in ID scenes only as distractors, so the agent has read
  their words; when they were left out of the ID scenes altogether, the tiny
  agent never learned those words).

Where we depart from ALFWorld, and why: scenes are one room with one receptacle
per location and no movable containers or slicing (ALFWorld's six task types
need neither); objects taken from a fridge count as cool in ALFWorld, so a cool
task's target never starts in the fridge, and no target starts where the goal
wants it. Every game is solvable by construction; the tests play the planner's
solution of every task type to a win.
"""

from __future__ import annotations

import dataclasses
import functools
import random
import zlib
from collections.abc import Callable, Collection, Sequence
from pathlib import Path

TASK_TYPES = (
    "pick_and_place_simple",
    "look_at_obj_in_light",
    "pick_clean_then_place_in_recep",
    "pick_heat_then_place_in_recep",
    "pick_cool_then_place_in_recep",
    "pick_two_obj_and_place",
)
"""ALFWorld's six task types (its ``traj_data.json`` names)."""

# --------------------------------------------------------------------------- #
# Vocabulary: object and receptacle types, what holds what (PDDL canContain),
# and room layouts (loosely after ALFRED's constants)
# --------------------------------------------------------------------------- #


@dataclasses.dataclass(frozen=True)
class ObjectSpec:
    cleanable: bool = False
    heatable: bool = False
    coolable: bool = False
    lookable: bool = False  # can be the object of look_at_obj_in_light


@dataclasses.dataclass(frozen=True)
class ReceptacleSpec:
    contents: frozenset[str]  # object types it can contain (canContain)
    openable: bool = False


def _objects(**props: str) -> dict[str, ObjectSpec]:
    """_objects(Apple="chk") -> {"Apple": ObjectSpec(cleanable, heatable, coolable)}.

    Flags: c=cleanable, h=heatable, k=coolable, l=lookable."""
    return {name: ObjectSpec(cleanable="c" in flags, heatable="h" in flags,
                             coolable="k" in flags, lookable="l" in flags)
            for name, flags in props.items()}


OBJECT_SPECS = _objects(
    # food
    Apple="chk", Potato="chk", Tomato="chk", Egg="chk", Bread="hk", Lettuce="ck",
    # dishes
    Mug="chkl", Cup="chk", Plate="chk", Bowl="ckl",
    # utensils and cookware
    Fork="c", Spoon="c", Knife="c", ButterKnife="c", Spatula="c", Ladle="c",
    Pan="ck", Pot="ck", Kettle="c",
    # cleaning things
    DishSponge="c", SoapBar="c", Cloth="cl", SoapBottle="", SprayBottle="",
    # small things
    KeyChain="l", CreditCard="l", CellPhone="l", Pen="l", Pencil="l", CD="l",
    Watch="l", RemoteControl="l",
    # decoration, paper, misc
    Vase="l", Statue="l", Candle="", AlarmClock="l", Book="l", Newspaper="l",
    TissueBox="", WineBottle="k", SaltShaker="", PepperShaker="", Pillow="l",
    Laptop="l",
)

_FOOD = {"Apple", "Potato", "Tomato", "Egg", "Bread", "Lettuce"}
_DISHES = {"Mug", "Cup", "Plate", "Bowl"}
_UTENSILS = {"Fork", "Spoon", "Knife", "ButterKnife", "Spatula", "Ladle"}
_COOKWARE = {"Pan", "Pot", "Kettle"}
_CLEANING = {"DishSponge", "SoapBar", "Cloth", "SoapBottle", "SprayBottle"}
_SMALL = {"KeyChain", "CreditCard", "CellPhone", "Pen", "Pencil", "CD", "Watch",
          "RemoteControl"}
_DECOR = {"Vase", "Statue", "Candle", "AlarmClock"}
_PAPER = {"Book", "Newspaper", "TissueBox"}
_KITCHEN_MISC = {"WineBottle", "SaltShaker", "PepperShaker"}
_SOFT = {"Pillow", "Laptop", "Book", "Newspaper", "CellPhone", "KeyChain",
         "CreditCard", "RemoteControl", "Cloth"}
_TABLE = (_FOOD | _DISHES | _UTENSILS | _COOKWARE | _CLEANING | _SMALL | _DECOR
          | _PAPER | _KITCHEN_MISC | {"Laptop"})


def _recep(contents, openable=False) -> ReceptacleSpec:
    return ReceptacleSpec(contents=frozenset(contents), openable=openable)


RECEPTACLE_SPECS = {
    "CounterTop": _recep(_TABLE),
    "DiningTable": _recep(_TABLE),
    "SideTable": _recep(_TABLE),
    "CoffeeTable": _recep(_TABLE),
    "Cabinet": _recep(_DISHES | _COOKWARE | _CLEANING | _PAPER | _KITCHEN_MISC
                      | {"Vase", "Candle"}, openable=True),
    "Drawer": _recep(_UTENSILS | _SMALL | _CLEANING | _PAPER
                     | {"SaltShaker", "PepperShaker", "Candle"}, openable=True),
    "Fridge": _recep(_FOOD | _DISHES | {"Pan", "Pot", "WineBottle"}, openable=True),
    "Microwave": _recep((_FOOD - {"Lettuce"}) | _DISHES, openable=True),
    "SinkBasin": _recep((_FOOD - {"Bread"}) | _DISHES | _UTENSILS | _COOKWARE
                        | {"DishSponge", "SoapBar", "Cloth"}),
    "StoveBurner": _recep(_COOKWARE),
    "GarbageCan": _recep(_FOOD | {"Newspaper", "TissueBox", "Pen", "Pencil", "CD",
                                  "DishSponge", "SoapBar", "Cloth", "SoapBottle",
                                  "SprayBottle", "WineBottle"}),
    "Shelf": _recep(_DISHES | _DECOR | _SMALL | _PAPER | _KITCHEN_MISC
                    | {"SoapBottle", "SprayBottle", "Cloth", "Kettle", "Pot"}),
    "Desk": _recep(_DISHES | _DECOR | _SMALL | _PAPER | {"Laptop", "Cloth"}),
    "Dresser": _recep(_DISHES | _DECOR | _SMALL | _PAPER | {"Laptop", "Cloth"}),
    "Sofa": _recep(_SOFT),
    "ArmChair": _recep(_SOFT),
    "Bed": _recep({"Pillow", "Laptop", "Book", "Newspaper", "CellPhone"}),
    "Safe": _recep({"CD", "CellPhone", "CreditCard", "KeyChain", "Statue", "Vase",
                    "Watch"}, openable=True),
}

@dataclasses.dataclass(frozen=True)
class RoomSpec:
    receptacles: tuple[tuple[str, int, int], ...]  # (type, min count, max count)
    objects: frozenset[str]  # object types that may appear in this room


ROOMS = {
    "kitchen": RoomSpec(
        receptacles=(("CounterTop", 1, 2), ("Cabinet", 2, 5), ("Drawer", 1, 3),
                     ("Fridge", 1, 1), ("Microwave", 1, 1), ("SinkBasin", 1, 1),
                     ("StoveBurner", 0, 2), ("GarbageCan", 1, 1), ("DiningTable", 0, 1),
                     ("Shelf", 0, 2)),
        objects=frozenset(_FOOD | _DISHES | _UTENSILS | _COOKWARE | _CLEANING
                          | _KITCHEN_MISC | {"CellPhone", "CreditCard", "KeyChain",
                                             "Newspaper", "Vase", "Candle"})),
    "livingroom": RoomSpec(
        receptacles=(("Sofa", 1, 1), ("ArmChair", 0, 1), ("CoffeeTable", 1, 1),
                     ("SideTable", 1, 2), ("Shelf", 1, 3), ("Drawer", 1, 3),
                     ("Cabinet", 0, 2), ("GarbageCan", 0, 1), ("DiningTable", 0, 1),
                     ("Safe", 0, 1)),
        objects=frozenset(_SMALL | _DECOR | _PAPER | _SOFT
                          | {"Mug", "Bowl", "Plate", "WineBottle", "SprayBottle"})),
    "bedroom": RoomSpec(
        receptacles=(("Bed", 1, 1), ("Desk", 1, 1), ("Dresser", 0, 1), ("SideTable", 1, 2),
                     ("Shelf", 1, 3), ("Drawer", 2, 4), ("GarbageCan", 1, 1),
                     ("Safe", 0, 1), ("ArmChair", 0, 1)),
        objects=frozenset(_SMALL | _DECOR | _PAPER | _SOFT | {"Mug", "Bowl", "Cup"})),
}

LAMP_TYPE = "DeskLamp"
LAMP_HOLDERS = ("Desk", "SideTable", "Dresser")


@dataclasses.dataclass(frozen=True)
class Vocabulary:
    objects: dict[str, ObjectSpec]
    receptacles: dict[str, ReceptacleSpec]
    rooms: dict[str, RoomSpec]
    min_receptacles: int = 6
    max_receptacles: int = 15
    min_distractors: int = 4
    max_distractors: int = 10

    def restrict(self, object_types: Sequence[str]) -> "Vocabulary":
        """Same vocabulary with only the given object types (e.g. for splits)."""
        keep = set(object_types)
        return dataclasses.replace(
            self, objects={k: v for k, v in self.objects.items() if k in keep})


DEFAULT_VOCABULARY = Vocabulary(objects=OBJECT_SPECS, receptacles=RECEPTACLE_SPECS,
                                rooms=ROOMS)

# ---------------------------------------------------------------------------
# Goals and task descriptions, as written in ALFWorld's goal library
# (alfworld/gen/goal_library.py): "#" there stands for PDDL's "-".
# ---------------------------------------------------------------------------

_PLACE_GOAL = """(:goal
        (exists (?r - receptacle)
            (exists (?o - object)
                (and
{extra}                    (objectType ?o {obj}Type)
                    (receptacleType ?r {recep}Type)
                    (inReceptacle ?o ?r)
                )
            )
        )
    )"""

_STATE_GOAL_EXTRA = {
    "pick_and_place_simple": "",
    "pick_clean_then_place_in_recep": "                    (cleanable ?o)\n                    (isClean ?o)\n",
    "pick_heat_then_place_in_recep": "                    (heatable ?o)\n                    (isHot ?o)\n",
    "pick_cool_then_place_in_recep": "                    (coolable ?o)\n                    (isCool ?o)\n",
}

_TWO_GOAL = """(:goal
        (exists (?r - receptacle)
            (exists (?o1 - object)
                (and
                    (objectType ?o1 {obj}Type)
                    (receptacleType ?r {recep}Type)
                    (inReceptacle ?o1 ?r)
                    (exists (?o2 - object)
                        (and
                            (not (= ?o1 ?o2))
                            (objectType ?o2 {obj}Type)
                            (receptacleType ?r {recep}Type)
                            (inReceptacle ?o2 ?r)
                        )
                    )
                )
            )
        )
    )"""

_LOOK_GOAL = """(:goal
        (and
            (exists (?ot - object ?r - receptacle ?a - agent ?l - location)
                (and
                    (objectType ?ot {toggle}Type)
                    (toggleable ?ot)
                    (isToggled ?ot)
                    (receptacleAtLocation ?r ?l)
                    (atLocation ?a ?l)
                    (inReceptacle ?ot ?r)
                )
            )
            (exists (?o - object ?a - agent)
                (and
                    (objectType ?o {obj}Type)
                    (holds ?a ?o)
                )
            )
        )
    )"""

TEMPLATES = {
    "pick_and_place_simple": ("put a {obj} in {recep}", "put some {obj} on {recep}"),
    "look_at_obj_in_light": ("look at {obj} under the {toggle}",
                             "examine the {obj} with the {toggle}"),
    "pick_clean_then_place_in_recep": ("put a clean {obj} in {recep}",
                                       "clean some {obj} and put it in {recep}"),
    "pick_heat_then_place_in_recep": ("put a hot {obj} in {recep}",
                                      "heat some {obj} and put it in {recep}"),
    "pick_cool_then_place_in_recep": ("put a cool {obj} in {recep}",
                                      "cool some {obj} and put it in {recep}"),
    "pick_two_obj_and_place": ("put two {obj} in {recep}",
                               "find two {obj} and put them in {recep}"),
}

# Property an object type needs for a task type, and the receptacle type
# (appliance) that performs the state change.
_REQUIRED_PROPERTY = {
    "pick_clean_then_place_in_recep": ("cleanable", "SinkBasin"),
    "pick_heat_then_place_in_recep": ("heatable", "Microwave"),
    "pick_cool_then_place_in_recep": ("coolable", "Fridge"),
}


def goal_pddl(task_type: str, obj: str, recep: str | None, toggle: str | None) -> str:
    if task_type == "look_at_obj_in_light":
        return _LOOK_GOAL.format(obj=obj, toggle=toggle)
    if task_type == "pick_two_obj_and_place":
        return _TWO_GOAL.format(obj=obj, recep=recep)
    return _PLACE_GOAL.format(extra=_STATE_GOAL_EXTRA[task_type], obj=obj, recep=recep)


# ---------------------------------------------------------------------------
# ALFRED-style ids.  The AlfredDemangler turns e.g.
# "Apple_bar__minus_01_dot_00_bar__plus_00_dot_90_bar__plus_01_dot_20"
# (= "Apple|-01.00|+00.90|+01.20") into "apple 1"; numbers are assigned per
# type in sorted-id order.  A sink basin must be "Sink|...|SinkBasin": the
# demangler keeps the part before the first "|" and appends "basin" to any id
# that contains "basin" (so "SinkBasin|..." would become "sinkbasinbasin").
# ---------------------------------------------------------------------------


def mangle(text: str) -> str:
    for old, new in (("-", "_minus_"), ("|", "_bar_"), ("+", "_plus_"), (".", "_dot_"),
                     (",", "_comma_")):
        text = text.replace(old, new)
    return text


class _IdMaker:
    """Unique ALFRED-style ids (``Apple|07`` mangled to ``Apple_bar_07``, shown by
    ALFWorld's demangler as "apple N"; a sink basin must read ``Sink|..|SinkBasin``).
    ALFRED's ids carry a thing's coordinates; a random seeded number serves the same
    purpose here (the demangler numbers things of a type in sorted-id order) and
    keeps the level files small."""

    def __init__(self, rng: random.Random):
        self.rng = rng
        self.used: set[str] = set()

    def _unique(self, make) -> str:
        while True:
            ident = mangle(make(f"{self.rng.randint(0, 99):02d}"))
            if ident not in self.used:
                self.used.add(ident)
                return ident

    def thing(self, type_name: str) -> str:
        return self._unique(lambda n: f"Sink|{n}|SinkBasin" if type_name == "SinkBasin" else f"{type_name}|{n}")

    def location(self) -> str:
        return self._unique(lambda n: f"loc|{n}")


# ---------------------------------------------------------------------------
# Scene sampling
# ---------------------------------------------------------------------------


@dataclasses.dataclass
class _Thing:
    ident: str
    type_name: str
    location: str
    receptacle: _Thing | None = None  # for objects: where it lies


def _rooms_for_task(task_type: str, vocab: Vocabulary) -> list[str]:
    """Room kinds that always contain what the task needs (appliance or lamp holder)."""
    if task_type in _REQUIRED_PROPERTY:
        needed = {_REQUIRED_PROPERTY[task_type][1]}
    elif task_type == "look_at_obj_in_light":
        needed = set(LAMP_HOLDERS)
    else:
        return list(vocab.rooms)
    return [name for name, room in vocab.rooms.items()
            if any(rtype in needed and lo >= 1 for rtype, lo, _ in room.receptacles)]


def _sample_receptacle_types(room: Sequence[tuple[str, int, int]], rng: random.Random,
                             vocab: Vocabulary) -> list[str]:
    counts = {rtype: rng.randint(lo, hi) for rtype, lo, hi in room}
    total = sum(counts.values())
    # Trim / pad to the requested range while respecting each type's bounds.
    bounds = {rtype: (lo, hi) for rtype, lo, hi in room}
    while total > vocab.max_receptacles:
        rtype = rng.choice(sorted(t for t, c in counts.items() if c > bounds[t][0]))
        counts[rtype] -= 1
        total -= 1
    while total < vocab.min_receptacles:
        rtype = rng.choice(sorted(t for t, c in counts.items() if c < bounds[t][1]))
        counts[rtype] += 1
        total += 1
    return [rtype for rtype, _, _ in room for _ in range(counts[rtype])]


def make_game(task_type: str, rng: random.Random, vocabulary: Vocabulary | None = None,
              targets: Collection[str] | None = None, max_tries: int = 100,
              pairs: Callable[[str, str], bool] | None = None) -> dict:
    """One game of ``task_type`` as a spec: ``{"task_type", "task", "room", "targets",
    "pddl_problem"}`` (``tw_pddl`` makes it playable). ``vocabulary``: the object and
    receptacle types the scene may hold; ``targets``: the object types the task may
    ask for (default: any in the vocabulary); ``pairs(object, destination)``: whether
    the task may ask for that pair (destination: the receptacle type, or the lamp of
    ``look_at_obj_in_light``; default: any). A scene that cannot serve the task is
    sampled again, up to ``max_tries`` times."""
    if task_type not in TASK_TYPES:
        raise ValueError(f"unknown task type {task_type!r}; choose one of {TASK_TYPES}")
    vocab = vocabulary or DEFAULT_VOCABULARY
    for _ in range(max_tries):
        game = _try_make_game(task_type, rng, vocab, targets, pairs or any_pair)
        if game is not None:
            return game
    raise RuntimeError(f"could not sample a {task_type} game from this vocabulary in {max_tries} tries")


def _try_make_game(task_type: str, rng: random.Random, vocab: Vocabulary,
                   targets: Collection[str] | None, pairs: Callable[[str, str], bool]) -> dict | None:
    room_name = rng.choice(_rooms_for_task(task_type, vocab))
    room = vocab.rooms[room_name]
    rtypes = _sample_receptacle_types(room.receptacles, rng, vocab)
    if task_type == "look_at_obj_in_light" and not any(t in LAMP_HOLDERS for t in rtypes):
        return None

    ids = _IdMaker(rng)
    receptacles = [_Thing(ids.thing(rt), rt, ids.location()) for rt in rtypes]

    def holders(otype: str, exclude: Sequence[str] = ()) -> list[_Thing]:
        return [r for r in receptacles
                if otype in vocab.receptacles[r.type_name].contents and r.type_name not in exclude]

    # --- choose the target object type and the destination receptacle type.
    prop, appliance = _REQUIRED_PROPERTY.get(task_type, (None, None))

    def destinations(otype: str) -> list[str]:
        """Destination types the task may name for ``otype``: the lamp for
        look_at_obj_in_light; else a present receptacle type that can hold it,
        but not the appliance doing the state change (sink/microwave/fridge)."""
        if task_type == "look_at_obj_in_light":
            options = [LAMP_TYPE]
        else:
            options = sorted({r.type_name for r in holders(otype, exclude=(appliance,) if appliance else ())})
        return [d for d in options if pairs(otype, d)]

    candidates = sorted(
        o for o, spec in vocab.objects.items()
        if o in room.objects and (targets is None or o in targets)
        and (prop is None or getattr(spec, prop))
        and (task_type != "look_at_obj_in_light" or spec.lookable)
        and holders(o) and destinations(o))
    if not candidates:
        return None
    target = rng.choice(candidates)

    parent = None
    toggle = None
    if task_type == "look_at_obj_in_light":
        toggle = LAMP_TYPE
    else:
        parent = rng.choice(destinations(target))

    # --- place target instances.  They never start in the destination type
    # (that would already satisfy a place goal); for cooling they never start
    # in the fridge (ALFWorld treats objects taken from the fridge as cool).
    n_targets = rng.randint(2, 3) if task_type == "pick_two_obj_and_place" else rng.randint(1, 2)
    exclude = [t for t in (parent, "Fridge" if task_type == "pick_cool_then_place_in_recep" else None) if t]
    target_holders = holders(target, exclude=exclude)
    if not target_holders:
        return None
    objects = []
    for _ in range(n_targets):
        r = rng.choice(target_holders)
        objects.append(_Thing(ids.thing(target), target, r.location, r))

    # --- the desk lamp for look_at_obj_in_light.
    if toggle:
        lamp_holder = rng.choice([r for r in receptacles if r.type_name in LAMP_HOLDERS])
        lamp = _Thing(ids.thing(toggle), toggle, lamp_holder.location, lamp_holder)
    else:
        lamp = None

    # --- distractors: objects of other types that belong in this room.
    others = sorted(o for o in vocab.objects
                    if o in room.objects and o != target and holders(o))
    n_distractors = rng.randint(vocab.min_distractors, vocab.max_distractors)
    for _ in range(n_distractors):
        if not others:
            break
        otype = rng.choice(others)
        r = rng.choice(holders(otype))
        objects.append(_Thing(ids.thing(otype), otype, r.location, r))

    start = ids.location()
    problem = _problem_text(task_type, receptacles, objects, lamp, start, vocab,
                            goal_pddl(task_type, target, parent, toggle))
    template = rng.choice(TEMPLATES[task_type])
    task = template.format(obj=target.lower(), recep=(parent or "").lower(), toggle=(toggle or "").lower())
    return {"task_type": task_type, "task": task, "room": room_name,
            "targets": {"object": target, "receptacle": parent, "toggle": toggle}, "pddl_problem": problem}


def _problem_text(task_type: str, receptacles: list[_Thing], objects: list[_Thing],
                  lamp: _Thing | None, start: str, vocab: Vocabulary, goal: str) -> str:
    all_objects = objects + ([lamp] if lamp else [])
    otypes = sorted({o.type_name for o in all_objects})
    rtypes = sorted({r.type_name for r in receptacles})

    decl = ["agent1 - agent"]
    decl += [f"{t}Type - otype" for t in otypes]
    decl += [f"{t}Type - rtype" for t in rtypes]
    decl += [f"{r.ident} - receptacle" for r in receptacles]
    decl += [f"{o.ident} - object" for o in all_objects]
    decl += [f"{loc} - location" for loc in [r.location for r in receptacles] + [start]]

    init = [f"(atLocation agent1 {start})"]
    for r in receptacles:
        init.append(f"(receptacleType {r.ident} {r.type_name}Type)")
        init.append(f"(receptacleAtLocation {r.ident} {r.location})")
        if vocab.receptacles[r.type_name].openable:
            init.append(f"(openable {r.ident})")
    for o in objects:
        spec = vocab.objects[o.type_name]
        init.append(f"(objectType {o.ident} {o.type_name}Type)")
        init.append(f"(pickupable {o.ident})")
        for flag in ("cleanable", "heatable", "coolable"):
            if getattr(spec, flag):
                init.append(f"({flag} {o.ident})")
        init.append(f"(inReceptacle {o.ident} {o.receptacle.ident})")
        init.append(f"(objectAtLocation {o.ident} {o.location})")
    if lamp:
        init.append(f"(objectType {lamp.ident} {lamp.type_name}Type)")
        init.append(f"(toggleable {lamp.ident})")
        init.append(f"(inReceptacle {lamp.ident} {lamp.receptacle.ident})")
        init.append(f"(objectAtLocation {lamp.ident} {lamp.location})")
    for rt in rtypes:
        for ot in otypes:
            if ot in vocab.receptacles[rt].contents:
                init.append(f"(canContain {rt}Type {ot}Type)")

    indent = "\n        "
    return (f"(define (problem {task_type})\n    (:domain alfred)\n"
            f"    (:objects{indent}{indent.join(decl)}\n    )\n"
            f"    (:init{indent}{indent.join(init)}\n    )\n"
            f"    {goal}\n)\n")


# --------------------------------------------------------------------------- #
# Playable games and the ID / OOD splits
# --------------------------------------------------------------------------- #


def tw_pddl(spec: dict) -> dict:
    """The ``.tw-pddl`` dict TextWorld plays: ALFWorld's domain, its grammar with the
    goal text of ``spec``, and the problem. Needs the ``alfworld`` package
    (``pip install -e ".[alfworld]"``) for the domain and grammar files."""
    try:
        import alfworld.info
    except ImportError:
        raise ImportError("ALFWorld games need the alfworld and textworld packages: "
                          "pip install -e \".[alfworld]\"") from None
    domain, grammar = _alfworld_texts(alfworld.info.ALFRED_PDDL_PATH, alfworld.info.ALFRED_TWL2_PATH)
    return {"pddl_domain": domain, "grammar": grammar.replace("UNKNOWN GOAL", spec["task"]),
            "pddl_problem": spec["pddl_problem"], "solvable": True}


@functools.cache
def _alfworld_texts(domain_path: str, grammar_path: str) -> tuple[str, str]:
    return Path(domain_path).read_text(), Path(grammar_path).read_text()


OOD_OBJECT_TYPES = frozenset({"Egg", "Cup", "Kettle", "Pan", "WineBottle", "Watch", "Book"})
"""Object types no ID game asks for (its scenes may hold them as distractors); ``ood_types_test``
asks only for them. Chosen so that every task type has such targets: cleanable (Egg, Cup,
Kettle, Pan), heatable (Egg, Cup), coolable (Egg, Cup, Pan, WineBottle), lookable (Watch, Book, Cup)."""


def any_pair(object_type: str, destination: str) -> bool:
    """Every (object type, destination type) pair is allowed (``make_game``'s default)."""
    return True


def held_out_pair(object_type: str, destination: str) -> bool:
    """Whether (object type, destination type) is a held-out pair: no ID task asks
    for it, every ``ood_test`` task does. The rule: CRC-32 of ``"Object/Destination"`` divisible
    by 5, which holds out 52 of the 287 pairs ID tasks could otherwise ask for, some for every
    task type (49 place, 3 look, 12 clean, 6 heat, 7 cool, 49 pick-two)."""
    return zlib.crc32(f"{object_type}/{destination}".encode()) % 5 == 0


SPLITS = {"id_train": "id", "id_test": "id", "ood_test": "ood_pairs", "ood_types_test": "ood_types"}
"""Level files of ``data/alfworld/``: split -> its distribution (module docstring)."""


def split_rules(distribution: str) -> tuple[frozenset[str], Callable[[str, str], bool]]:
    """(target object types, allowed (object, destination) pairs) of a distribution of ``SPLITS``.
    Scenes always draw from every object type."""
    id_targets = frozenset(OBJECT_SPECS) - OOD_OBJECT_TYPES
    if distribution == "id":
        return id_targets, lambda obj, destination: not held_out_pair(obj, destination)
    if distribution == "ood_pairs":
        return id_targets, held_out_pair
    if distribution == "ood_types":
        return OOD_OBJECT_TYPES, any_pair
    raise ValueError(f"distribution must be one of {sorted(set(SPLITS.values()))}, got {distribution!r}")


def make_split(split: str, games_per_type: int, seed: int = 0) -> list[dict]:
    """``games_per_type`` games of every task type for ``split`` (a key of ``SPLITS``),
    each with an ``id``; the same arguments give the same games (game i of a task type
    is drawn from ``random.Random("seed/split/task_type/i")``, which Python hashes with
    SHA-512: independent of PYTHONHASHSEED and of the other games)."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of {sorted(SPLITS)}")
    targets, pairs = split_rules(SPLITS[split])
    games = []
    for task_type in TASK_TYPES:
        for i in range(games_per_type):
            rng = random.Random(f"{seed}/{split}/{task_type}/{i}")
            games.append({"id": f"{split}_{task_type}_{i:03d}",
                          **make_game(task_type, rng, DEFAULT_VOCABULARY, targets, pairs=pairs)})
    return games
