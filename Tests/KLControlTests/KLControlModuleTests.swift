import Testing
import KLControl

// Placeholder until the module's stages land: the module builds and links.
@Test func KLControlModuleLinks() { #expect(Bool(true)) }
