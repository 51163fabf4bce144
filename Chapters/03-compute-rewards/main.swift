print("chapter 03-compute-rewards: not written yet")
