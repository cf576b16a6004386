"""Online algorithms that generate offbench's data: SAC (continuous) and DQN (discrete)."""
