print("chapter 00-the-map: not written yet")
