import Foundation

/// The samplers a request can name, under our names, AUTOMATIC1111's names, and common aliases
/// (matched case-insensitively); each maps to one diffusers scheduler class and setting.
public enum SamplerKind: String, CaseIterable, Sendable {
    case ddim
    case pndm
    case euler
    case eulerAncestral = "euler_a"
    case dpmPlusPlus2M = "dpmpp_2m"
    case dpmPlusPlus2MKarras = "dpmpp_2m_karras"
    case lcm

    /// Our canonical name (`ddim`, `euler_a`, `dpmpp_2m_karras`, ...).
    public var name: String { rawValue }

    /// The name AUTOMATIC1111's web UI and API use.
    public var a1111Name: String {
        switch self {
        case .ddim: "DDIM"
        case .pndm: "PLMS"
        case .euler: "Euler"
        case .eulerAncestral: "Euler a"
        case .dpmPlusPlus2M: "DPM++ 2M"
        case .dpmPlusPlus2MKarras: "DPM++ 2M Karras"
        case .lcm: "LCM"
        }
    }

    /// Other accepted spellings (k-diffusion and diffusers names).
    public var aliases: [String] {
        switch self {
        case .ddim: ["ddim_scheduler"]
        case .pndm: ["pndm_plms"]
        case .euler: ["k_euler", "euler_discrete"]
        case .eulerAncestral: ["euler_ancestral", "k_euler_a", "k_euler_ancestral", "euler-a"]
        case .dpmPlusPlus2M: ["k_dpmpp_2m", "dpm++_2m", "dpmsolver++", "dpm_solver_multistep"]
        case .dpmPlusPlus2MKarras: ["k_dpmpp_2m_karras", "dpm++_2m_karras"]
        case .lcm: ["lcm_scheduler"]
        }
    }

    /// The diffusers scheduler class this sampler is.
    public var diffusersClassName: String {
        switch self {
        case .ddim: "DDIMScheduler"
        case .pndm: "PNDMScheduler"
        case .euler: "EulerDiscreteScheduler"
        case .eulerAncestral: "EulerAncestralDiscreteScheduler"
        case .dpmPlusPlus2M, .dpmPlusPlus2MKarras: "DPMSolverMultistepScheduler"
        case .lcm: "LCMScheduler"
        }
    }

    /// Looks a sampler up by any of its names, ignoring case and surrounding spaces.
    public init?(name: String) {
        let key = name.trimmingCharacters(in: .whitespaces).lowercased()
        guard
            let kind = Self.allCases.first(where: { kind in
                kind.rawValue == key || kind.a1111Name.lowercased() == key || kind.aliases.contains(key)
            })
        else { return nil }
        self = kind
    }

    /// Like `init?(name:)`, but an unknown name throws an error that lists the valid names.
    public static func named(_ name: String) throws -> SamplerKind {
        guard let kind = SamplerKind(name: name) else {
            throw SchedulerError.unknownSampler(name, valid: allCases.flatMap { [$0.name, $0.a1111Name] })
        }
        return kind
    }

    /// A scheduler for a model's `scheduler_config.json`, configured as diffusers'
    /// `<Class>.from_config(pipe.scheduler.config, **overrides)` would be: the keys the file sets, this
    /// sampler's settings (PLMS without PRK, DPM++ order 2, Karras or not), and the class's own defaults.
    public func makeScheduler(configuration: SchedulerConfiguration) throws -> any Scheduler {
        var c = configuration
        switch self {
        case .ddim:
            return try DDIMScheduler(configuration: c)
        case .pndm:
            c.skipPrkSteps = true
            return try PNDMScheduler(configuration: c)
        case .euler:
            return try EulerDiscreteScheduler(configuration: c)
        case .eulerAncestral:
            return try EulerAncestralDiscreteScheduler(configuration: c)
        case .dpmPlusPlus2M, .dpmPlusPlus2MKarras:
            c.algorithmType = "dpmsolver++"
            c.solverOrder = 2
            c.useKarrasSigmas = self == .dpmPlusPlus2MKarras
            return try DPMSolverMultistepScheduler(configuration: c)
        case .lcm:
            return try LCMScheduler(configuration: c)
        }
    }

    /// One entry of a `/v1/samplers`-style listing.
    public struct Description: Sendable, Equatable {
        public let name: String
        public let a1111Name: String
        public let aliases: [String]
        public let diffusersClassName: String
    }

    /// Every sampler, for listings.
    public static var catalog: [Description] {
        allCases.map {
            Description(name: $0.name, a1111Name: $0.a1111Name, aliases: $0.aliases, diffusersClassName: $0.diffusersClassName)
        }
    }
}
