"""Experiment: LBO on the larger built-in shapes (radius 0.15-0.25 of the side, centres over
0.39-0.61), with the goals named by --without_goals left out of the goal table (a screen, not
a switch). Run from the repository root:
    PYTHONPATH=. python experiment.py --without_goals core_consistency ARGS   (train.py's)"""
import sys

import configs
import train
from imagesets import SyntheticShapes

SyntheticShapes.RADIUS, SyntheticShapes.CENTRE = (0.15, 0.10), (0.39, 0.22)
args = sys.argv[1:]
without = []
if "--without_goals" in args:
    at = args.index("--without_goals")
    without = args[at + 1].split(",")
    del args[at:at + 2]
table = configs.goal_table
configs.goal_table = lambda cfg: [g for g in table(cfg) if g["name"] not in without]
train.main(args)
