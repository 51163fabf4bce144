print("chapter 08-dpo-loss: not written yet")
