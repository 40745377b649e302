import Foundation

/// Where tests find PostgreSQL: `SWIFTDIFFUSION_TEST_POSTGRES=postgres://USER:PASSWORD@HOST:PORT/DATABASE`
/// (`.ci/run` starts Debian's PostgreSQL on loopback and sets it).
///
/// Without it, tests that need PostgreSQL skip with a message locally, and fail in CI (`CI=true`) or with
/// `SWIFTDIFFUSION_REQUIRE_POSTGRES=1`.
public enum TestPostgres {
    public static var baseURL: String? {
        ProcessInfo.processInfo.environment["SWIFTDIFFUSION_TEST_POSTGRES"].flatMap { $0.isEmpty ? nil : $0 }
    }

    public static var required: Bool {
        let environment = ProcessInfo.processInfo.environment
        return environment["CI"] == "true" || environment["SWIFTDIFFUSION_REQUIRE_POSTGRES"] == "1"
    }

    public static let missingMessage =
        "SWIFTDIFFUSION_TEST_POSTGRES is not set (postgres://USER:PASSWORD@HOST:PORT/DATABASE; .ci/run sets it)"

    /// A new schema name, unique to this call.
    public static func freshSchema() -> String {
        "t_" + UUID().uuidString.replacingOccurrences(of: "-", with: "").prefix(16).lowercased()
    }

    /// `base` with `schema=NAME` added.
    public static func url(_ base: String, schema: String) -> String {
        base + (base.contains("?") ? "&" : "?") + "schema=" + schema
    }
}
