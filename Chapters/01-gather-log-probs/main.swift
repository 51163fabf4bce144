print("chapter 01-gather-log-probs: not written yet")
