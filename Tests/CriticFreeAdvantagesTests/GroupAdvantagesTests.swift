import Testing
import TensorCore
import TestSupport
@testable import CriticFreeAdvantages

@Suite("group_advantages")
struct GroupAdvantagesTests {
    @Test("every golden fixture passes")
    func golden() {
        expectGoldenFixturesPass(stage: "group_advantages", minimum: 10)
    }
}
