import Testing
import PolicyLosses
