print("chapter 07-ppo-step: not written yet")
