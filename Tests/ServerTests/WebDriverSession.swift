import Foundation
import Hummingbird
import HummingbirdTesting
import XCTest

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Where chromedriver and a Chromium-family browser are installed (PATH, or the environment overrides
/// `SWIFTDIFFUSION_CHROMEDRIVER` and `SWIFTDIFFUSION_CHROMIUM`).
struct BrowserTools {
    let chromedriver: URL
    let browser: URL

    static let installHint =
        "install chromedriver and Chromium (Debian: `apt-get install chromium chromium-driver`), or point SWIFTDIFFUSION_CHROMEDRIVER and SWIFTDIFFUSION_CHROMIUM at them"

    static func locate() -> BrowserTools? {
        // An override that names no executable counts as "not installed" rather than falling back to PATH.
        let environment = ProcessInfo.processInfo.environment
        let driver = environment["SWIFTDIFFUSION_CHROMEDRIVER"].map(executable) ?? find(["chromedriver"])
        let browser =
            environment["SWIFTDIFFUSION_CHROMIUM"].map(executable)
            ?? find(["chromium", "chromium-browser", "google-chrome", "google-chrome-stable"])
        guard let driver, let browser else { return nil }
        return BrowserTools(chromedriver: driver, browser: browser)
    }

    private static func find(_ names: [String]) -> URL? {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/local/bin:/usr/bin:/bin"
        for name in names {
            for directory in path.split(separator: ":") {
                if let url = executable("\(directory)/\(name)") { return url }
            }
        }
        return nil
    }

    private static func executable(_ path: String) -> URL? {
        FileManager.default.isExecutableFile(atPath: path) ? URL(fileURLWithPath: path) : nil
    }
}

/// Failures of the WebDriver protocol, with what the driver said.
struct WebDriverError: Error, CustomStringConvertible {
    let description: String
}

/// A chromedriver process and one headless browser session driven over W3C WebDriver (JSON over HTTP, sent
/// with HummingbirdTesting's NIO client: Foundation's URLSession on Linux rejects chromedriver's headers,
/// which have no space after the colon).
///
/// The browser runs with its own profile folder; `close()` ends the session, stops chromedriver and kills
/// any browser process still using that profile, so no process outlives the test.
final class WebDriverSession: @unchecked Sendable {
    static let elementKey = "element-6066-11e4-a52e-4f735466cecf"

    let folder: URL
    private let driver: Process
    private let port: Int
    private var sessionID: String?

    /// Starts chromedriver on a free loopback port and opens a headless browser session.
    init(tools: BrowserTools, folder: URL, windowSize: (width: Int, height: Int)) async throws {
        self.folder = folder
        port = try Self.freeLoopbackPort()
        driver = Process()
        driver.executableURL = tools.chromedriver
        driver.arguments = ["--port=\(port)", "--log-path=\(folder.appendingPathComponent("chromedriver.log").path)"]
        driver.standardOutput = FileHandle.nullDevice
        driver.standardError = FileHandle.nullDevice
        try driver.run()
        do {
            try await waitUntilReady(timeout: 20)
            let profile = folder.appendingPathComponent("profile")
            try FileManager.default.createDirectory(at: profile, withIntermediateDirectories: true)
            let arguments = [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                "--no-default-browser-check", "--disable-extensions", "--disable-background-networking", "--hide-scrollbars",
                "--force-device-scale-factor=1", "--force-color-profile=srgb", "--user-data-dir=\(profile.path)",
                "--window-size=\(windowSize.width),\(windowSize.height)",
            ]
            let capabilities: [String: Any] = [
                "browserName": "chrome",
                "goog:chromeOptions": ["binary": tools.browser.path, "args": arguments],
                "timeouts": ["implicit": 0, "pageLoad": 30_000, "script": 30_000],
            ]
            let value = try await send(.post, "session", ["capabilities": ["alwaysMatch": capabilities]])
            guard let id = (value as? [String: Any])?["sessionId"] as? String else {
                throw WebDriverError(description: "chromedriver returned no session id: \(value)")
            }
            sessionID = id
        } catch {
            await close()
            throw error
        }
    }

    // MARK: - Commands

    func navigate(to url: URL) async throws {
        _ = try await command(.post, "url", ["url": url.absoluteString])
    }

    /// The element matching a CSS selector (fails the command if there is none).
    func element(_ selector: String) async throws -> String {
        let value = try await command(.post, "element", ["using": "css selector", "value": selector])
        guard let id = (value as? [String: Any])?[Self.elementKey] as? String else {
            throw WebDriverError(description: "no element id for '\(selector)' in \(value)")
        }
        return id
    }

    func click(_ selector: String) async throws {
        let id = try await element(selector)
        _ = try await command(.post, "element/\(id)/click", [:])
    }

    func type(_ text: String, into selector: String, clearing: Bool = false) async throws {
        let id = try await element(selector)
        if clearing { _ = try await command(.post, "element/\(id)/clear", [:]) }
        _ = try await command(.post, "element/\(id)/value", ["text": text])
    }

    /// Runs a script in the page; `arguments` may hold element ids made with `reference(_:)`.
    @discardableResult
    func execute(_ script: String, _ arguments: [Any] = []) async throws -> Any {
        try await command(.post, "execute/sync", ["script": script, "args": arguments])
    }

    func reference(_ elementID: String) -> [String: String] { [Self.elementKey: elementID] }

    /// Performs W3C input actions (one pointer source), then releases everything still pressed.
    func pointerActions(_ actions: [[String: Any]]) async throws {
        let source: [String: Any] = [
            "type": "pointer", "id": "mouse", "parameters": ["pointerType": "mouse"], "actions": actions,
        ]
        _ = try await command(.post, "actions", ["actions": [source]])
        _ = try await command(.delete, "actions", nil)
    }

    func setWindowSize(width: Int, height: Int) async throws {
        _ = try await command(.post, "window/rect", ["width": width, "height": height])
    }

    /// The viewport as a PNG.
    func screenshot() async throws -> Data {
        let value = try await command(.get, "screenshot", nil)
        guard let text = value as? String, let data = Data(base64Encoded: text) else {
            throw WebDriverError(description: "the screenshot is not base64")
        }
        return data
    }

    /// Polls `condition` every 100 ms until it returns a value or `timeout` seconds pass.
    func wait<T>(
        _ what: String, timeout: TimeInterval, state: () async throws -> String = { "" }, until condition: () async throws -> T?
    ) async throws -> T {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if let value = try await condition() { return value }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw WebDriverError(
            description: "timed out after \(Int(timeout)) s waiting for \(what); page state: \(try await state())")
    }

    /// Ends the session and every process it started. Safe to call more than once.
    func close() async {
        if let id = sessionID {
            sessionID = nil
            _ = try? await send(.delete, "session/\(id)", nil, timeout: .seconds(10))
        }
        if driver.isRunning {
            driver.terminate()
            for _ in 0..<50 where driver.isRunning { try? await Task.sleep(for: .milliseconds(100)) }
            if driver.isRunning { kill(driver.processIdentifier, SIGKILL) }
        }
        Self.killProcesses(using: folder.appendingPathComponent("profile").path)
        // The temporary browser profile (tens of MB) goes with the session.
        try? FileManager.default.removeItem(at: folder.appendingPathComponent("profile"))
    }

    /// The last lines of chromedriver's log, for failure messages.
    var logTail: String {
        let text = (try? String(contentsOf: folder.appendingPathComponent("chromedriver.log"), encoding: .utf8)) ?? ""
        return text.split(separator: "\n").suffix(15).joined(separator: "\n")
    }

    // MARK: - Protocol

    private func command(_ method: HTTPRequest.Method, _ path: String, _ body: [String: Any]?) async throws -> Any {
        guard let sessionID else { throw WebDriverError(description: "the WebDriver session is closed") }
        return try await send(method, "session/\(sessionID)/\(path)", body)
    }

    /// One WebDriver request on its own connection; returns the response's `value`.
    private func send(
        _ method: HTTPRequest.Method, _ path: String, _ body: [String: Any]?, timeout: Duration = .seconds(60)
    ) async throws
        -> Any
    {
        var headers: HTTPFields = [.connection: "close"]
        var payload: ByteBuffer?
        if let body {
            payload = ByteBuffer(bytes: try JSONSerialization.data(withJSONObject: body))
            headers[.contentType] = "application/json; charset=utf-8"
        }
        let request = TestClient.Request(
            "/\(path)", method: method, authority: "127.0.0.1:\(port)", headers: headers, body: payload)
        let response = try await TestClient.withClient(host: "127.0.0.1", port: port, configuration: .init(timeout: timeout)) {
            client in
            try await client.execute(request)
        }
        let data = response.body.map { Data(buffer: $0) } ?? Data()
        let object = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any]
        let value = object?["value"] ?? NSNull()
        if response.status.code >= 400 {
            let detail = value as? [String: Any]
            throw WebDriverError(
                description:
                    "WebDriver \(method) /\(path) failed (\(response.status.code)): \(detail?["error"] ?? "?"): \(detail?["message"] ?? String(decoding: data, as: UTF8.self))"
            )
        }
        return value
    }

    private func waitUntilReady(timeout: TimeInterval) async throws {
        let deadline = Date().addingTimeInterval(timeout)
        var last = "no answer"
        while Date() < deadline {
            guard driver.isRunning else {
                throw WebDriverError(description: "chromedriver exited at start (status \(driver.terminationStatus)): \(logTail)")
            }
            do {
                let value = try await send(.get, "status", nil, timeout: .seconds(2))
                if (value as? [String: Any])?["ready"] as? Bool == true { return }
                last = "\(value)"
            } catch {
                last = "\(error)"
            }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw WebDriverError(description: "chromedriver was not ready within \(Int(timeout)) s (\(last))")
    }

    /// A TCP port on 127.0.0.1 that nothing listens on right now.
    static func freeLoopbackPort() throws -> Int {
        #if canImport(Glibc)
            let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        #else
            let descriptor = socket(AF_INET, SOCK_STREAM, 0)
        #endif
        guard descriptor >= 0 else { throw WebDriverError(description: "socket() failed") }
        defer { closeDescriptor(descriptor) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = 0
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { pointer in
                bind(descriptor, pointer, length) == 0 && getsockname(descriptor, pointer, &length) == 0
            }
        }
        guard bound else { throw WebDriverError(description: "could not bind a loopback port") }
        return Int(UInt16(bigEndian: address.sin_port))
    }

    /// Kills (by pid) the processes whose command line mentions `marker`: the browser processes of this
    /// session's profile folder, should chromedriver have left any behind.
    static func killProcesses(using marker: String) {
        #if os(Linux)
            guard let entries = try? FileManager.default.contentsOfDirectory(atPath: "/proc") else { return }
            let own = getpid()
            for entry in entries {
                guard let pid = Int32(entry), pid != own,
                    let commandLine = FileManager.default.contents(atPath: "/proc/\(entry)/cmdline"),
                    String(decoding: commandLine.map { $0 == 0 ? 0x20 : $0 }, as: UTF8.self).contains(marker)
                else { continue }
                kill(pid, SIGKILL)
            }
        #endif
    }
}

/// `close(2)` under a name that the session's own `close()` does not shadow.
private func closeDescriptor(_ descriptor: Int32) {
    _ = close(descriptor)
}
