print("chapter 05-actor-loss: not written yet")
