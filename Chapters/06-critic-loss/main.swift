print("chapter 06-critic-loss: not written yet")
