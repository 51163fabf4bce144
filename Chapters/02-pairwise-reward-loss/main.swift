print("chapter 02-pairwise-reward-loss: not written yet")
