"""Online algorithms by name, for ``offbench online train ALGO``."""
from baselines.online.dqn import DQN
from baselines.online.sac import SAC

ALGORITHMS = {"sac": SAC, "dqn": DQN}
