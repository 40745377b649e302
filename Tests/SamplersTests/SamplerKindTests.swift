import XCTest

@testable import Samplers

/// Sampler names: ours, AUTOMATIC1111's, aliases, and the error for unknown names.
final class SamplerKindTests: XCTestCase {
    func testOurNamesAndA1111Names() {
        let expected: [(String, String, SamplerKind)] = [
            ("ddim", "DDIM", .ddim), ("pndm", "PLMS", .pndm), ("euler", "Euler", .euler),
            ("euler_a", "Euler a", .eulerAncestral), ("dpmpp_2m", "DPM++ 2M", .dpmPlusPlus2M),
            ("dpmpp_2m_karras", "DPM++ 2M Karras", .dpmPlusPlus2MKarras), ("lcm", "LCM", .lcm),
        ]
        for (name, a1111, kind) in expected {
            XCTAssertEqual(SamplerKind(name: name), kind, name)
            XCTAssertEqual(SamplerKind(name: a1111), kind, a1111)
            XCTAssertEqual(SamplerKind(name: a1111.uppercased()), kind, a1111.uppercased())
            XCTAssertEqual(SamplerKind(name: "  \(name.uppercased()) "), kind)
            XCTAssertEqual(kind.name, name)
            XCTAssertEqual(kind.a1111Name, a1111)
        }
        XCTAssertEqual(SamplerKind(name: "k_euler_a"), .eulerAncestral)
        XCTAssertEqual(SamplerKind(name: "plms"), .pndm)
        XCTAssertEqual(SamplerKind(name: "K_DPMPP_2M_KARRAS"), .dpmPlusPlus2MKarras)
    }

    func testUnknownNameListsValidNames() {
        XCTAssertNil(SamplerKind(name: "heun"))
        XCTAssertThrowsError(try SamplerKind.named("DPM2 a")) { error in
            guard case SchedulerError.unknownSampler(let name, let valid) = error else {
                return XCTFail("unexpected error \(error)")
            }
            XCTAssertEqual(name, "DPM2 a")
            XCTAssertTrue(valid.contains("euler_a") && valid.contains("Euler a") && valid.contains("DPM++ 2M Karras"))
            XCTAssertTrue("\(error)".contains("valid samplers: ddim, DDIM, pndm, PLMS"), "\(error)")
        }
    }

    func testCatalogListsEverySampler() {
        let catalog = SamplerKind.catalog
        XCTAssertEqual(catalog.map(\.name), ["ddim", "pndm", "euler", "euler_a", "dpmpp_2m", "dpmpp_2m_karras", "lcm"])
        XCTAssertEqual(catalog.first { $0.name == "dpmpp_2m_karras" }?.diffusersClassName, "DPMSolverMultistepScheduler")
        // No name or alias may belong to two samplers, and every one must find its sampler.
        var owner: [String: SamplerKind] = [:]
        for kind in SamplerKind.allCases {
            for key in [kind.name, kind.a1111Name.lowercased()] + kind.aliases {
                XCTAssertTrue(owner[key] == nil || owner[key] == kind, "\(key) is claimed twice")
                owner[key] = kind
                XCTAssertEqual(SamplerKind(name: key), kind, key)
            }
        }
    }

    /// Each kind builds its diffusers class with its own settings on top of the model's config.
    func testMakeSchedulerAppliesSamplerSettings() throws {
        var config = SchedulerConfiguration()
        config.className = "PNDMScheduler"
        config.betaSchedule = "scaled_linear"
        config.betaStart = 0.00085
        config.betaEnd = 0.012
        config.stepsOffset = 1
        config.skipPrkSteps = false
        let pndm = try SamplerKind.pndm.makeScheduler(configuration: config)
        XCTAssertEqual((pndm as? PNDMScheduler)?.configuration.skipPrkSteps, true)
        let karras = try SamplerKind.dpmPlusPlus2MKarras.makeScheduler(configuration: config)
        XCTAssertEqual((karras as? DPMSolverMultistepScheduler)?.configuration.useKarrasSigmas, true)
        let plain = try SamplerKind.dpmPlusPlus2M.makeScheduler(configuration: config)
        XCTAssertEqual((plain as? DPMSolverMultistepScheduler)?.configuration.useKarrasSigmas, false)
        // The file does not set timestep_spacing: each class uses its own default, as diffusers' from_config
        // does (PNDM's default "leading" is not carried over to Euler).
        let euler = try SamplerKind.euler.makeScheduler(configuration: config)
        XCTAssertEqual((euler as? EulerDiscreteScheduler)?.configuration.timestepSpacing, "linspace")
        let ddim = try SamplerKind.ddim.makeScheduler(configuration: config)
        XCTAssertEqual((ddim as? DDIMScheduler)?.configuration.timestepSpacing, "leading")
    }
}
