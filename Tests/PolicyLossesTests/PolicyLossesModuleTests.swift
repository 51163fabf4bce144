import Testing
import PolicyLosses

// Placeholder until the module's stages land: the module builds and links.
@Test func PolicyLossesModuleLinks() { #expect(Bool(true)) }
