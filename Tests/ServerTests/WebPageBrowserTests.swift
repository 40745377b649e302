import Foundation
import Hummingbird
import HummingbirdTesting
import Logging
import Server
import Serving
import XCTest

/// The web page end to end in headless Chromium: a real server on a loopback port, chromedriver driven over
/// W3C WebDriver. Skipped when no browser is installed, unless SWIFTDIFFUSION_REQUIRE_BROWSER=1 (CI).
final class WebPageBrowserTests: XCTestCase {
    static let steps = 4

    func testGenerateWithLoRAAndDrawnControlImage() async throws {
        guard let tools = BrowserTools.locate() else {
            let message = "headless browser test not run: \(BrowserTools.installHint)"
            if ProcessInfo.processInfo.environment["SWIFTDIFFUSION_REQUIRE_BROWSER"] == "1" {
                XCTFail("SWIFTDIFFUSION_REQUIRE_BROWSER=1 but no browser was found: \(BrowserTools.installHint)")
                return
            }
            throw XCTSkip(message)
        }
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("swiftdiffusion-browser-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        // The temporary folder (browser profile, chromedriver log, screenshot) goes on every path; a failure
        // keeps the screenshot and the log, copied out first.
        let keep = FailureFlag()
        defer {
            let failed = keep.isSet || (testRun?.failureCount ?? 0) > 0
            if failed || ProcessInfo.processInfo.environment["SWIFTDIFFUSION_KEEP_BROWSER_FILES"] == "1" {
                let kept = FileManager.default.temporaryDirectory.appendingPathComponent("swiftdiffusion-browser-files-\(getpid())")
                try? FileManager.default.createDirectory(at: kept, withIntermediateDirectories: true)
                for name in ["web-page.png", "layout-1280x800.png", "chromedriver.log"] {
                    try? FileManager.default.copyItem(at: folder.appendingPathComponent(name), to: kept.appendingPathComponent(name))
                }
                print("browser test files kept in \(kept.path)")
            }
            try? FileManager.default.removeItem(at: folder)
        }

        var logger = Logger(label: "browser-test")
        logger.logLevel = .warning
        // The fixture models plus the embedded family, so that the model picker has a model of each kind.
        ServerApplication.bootstrapMetrics()
        let repository = ModelRepository(roots: [TestServer.modelsFolder], embeddedModels: Self.embeddedModels, defaultModel: "sd1")
        let engine = GenerationEngine(configuration: EngineConfiguration(), repository: repository, store: InMemoryJobStore(), logger: logger)
        let application = Application(
            router: ServerApplication.router(engine: engine, configuration: ServerConfiguration()),
            configuration: .init(address: .hostname("127.0.0.1", port: 0), serverName: "SwiftDiffusion"),
            services: [engine], logger: logger)

        try await application.test(.live) { client in
            let port = try XCTUnwrap(client.port, "the live test server has no port")
            let browser = try await WebDriverSession(tools: tools, folder: folder, windowSize: (1280, 800))
            do {
                let profiles = try await Self.modelProfiles(client)
                let jobID = try await Self.drive(
                    browser, page: URL(string: "http://127.0.0.1:\(port)/")!, folder: folder, profiles: profiles)
                try await Self.checkJob(jobID, client: client)
                await browser.close()
            } catch {
                keep.set()
                let log = browser.logTail
                await browser.close()
                XCTFail("browser test failed: \(error)\nchromedriver log (last lines):\n\(log)")
                throw error
            }
            XCTAssertFalse(
                FileManager.default.fileExists(atPath: folder.appendingPathComponent("profile").path),
                "the browser profile folder outlived the session")
        }
    }

    static var embeddedModels: URL { repositoryRoot.appendingPathComponent("models") }

    /// Each model's entry in `GET /v1/models`: whether it is embedded, and its profile when the listing has one.
    private static func modelProfiles(_ client: some TestClientProtocol) async throws -> [String: [String: Any]] {
        let response = try await client.execute(uri: "/v1/models", method: .get)
        XCTAssertEqual(response.status, .ok)
        let data = response.body.jsonObject["data"] as? [[String: Any]] ?? []
        return Dictionary(data.compactMap { entry in (entry["id"] as? String).map { ($0, entry) } }) { first, _ in first }
    }

    /// The page in a 1280x800 window: no horizontal scrolling, the whole form (and so Generate) above the fold;
    /// the fields and the placeholder prompt follow the model picker.
    private static func checkLayoutAndModelDefaults(
        _ browser: WebDriverSession, folder: URL, profiles: [String: [String: Any]]
    ) async throws {
        let layout =
            try await browser.execute(
                """
                const rect = (id) => document.getElementById(id).getBoundingClientRect();
                return {
                  width: window.innerWidth, height: window.innerHeight, scrollWidth: document.documentElement.scrollWidth,
                  generateTop: rect('generate').top, generateBottom: rect('generate').bottom, formBottom: rect('generate-form').bottom,
                  scrollY: window.scrollY,
                };
                """) as? [String: Any] ?? [:]
        let number = { (key: String) in (layout[key] as? NSNumber)?.doubleValue ?? .nan }
        let screenshot = try await browser.screenshot()
        try screenshot.write(to: folder.appendingPathComponent("layout-1280x800.png"))
        XCTAssertEqual(number("width"), 1280, "viewport width (\(layout))")
        // A 1280x800 window leaves about 1280x650 to the page (headless Chromium draws the browser's bars too).
        XCTAssertLessThanOrEqual(number("height"), 800, "viewport height (\(layout))")
        XCTAssertGreaterThanOrEqual(number("height"), 600, "viewport height (\(layout))")
        XCTAssertEqual(number("scrollY"), 0)
        XCTAssertLessThanOrEqual(number("scrollWidth"), number("width"), "the page scrolls sideways at 1280 px: \(layout)")
        XCTAssertGreaterThan(number("generateTop"), 0, "Generate is above the window: \(layout)")
        XCTAssertLessThanOrEqual(number("generateBottom"), number("height"), "Generate is below the fold at 1280x800: \(layout)")
        XCTAssertLessThanOrEqual(number("formBottom"), number("height"), "the form does not fit a 1280x800 window: \(layout)")

        // The picker's models: the fixture SD 1.x (the default) and the embedded shapes model.
        let fields = {
            try await browser.execute(
                """
                const v = (id) => document.getElementById(id).value;
                return {model: v('model'), width: v('width'), height: v('height'), steps: v('steps'), cfg: v('cfg'),
                        sampler: v('sampler'), placeholder: document.getElementById('prompt').placeholder};
                """) as? [String: String] ?? [:]
        }
        func check(_ id: String, placeholder: String) async throws {
            let shown = try await fields()
            XCTAssertEqual(shown["model"], id)
            XCTAssertEqual(shown["placeholder"], placeholder, "placeholder prompt for \(id)")
            guard let profile = profiles[id]?["profile"] as? [String: Any] else {
                // No profile in the listing: the page leaves the fields to the server (the model's own settings).
                for key in ["width", "height", "steps", "cfg", "sampler"] { XCTAssertEqual(shown[key], "", "\(id) \(key)") }
                return
            }
            for key in ["width", "height", "steps", "cfg", "sampler"] {
                let expected = profile[key].map { value -> String in
                    if let number = value as? NSNumber, !(value is String) {
                        return number.doubleValue == number.doubleValue.rounded() ? "\(number.intValue)" : "\(number.doubleValue)"
                    }
                    return "\(value)"
                }
                XCTAssertEqual(shown[key], expected, "\(id): \(key) follows the model's profile")
            }
        }
        XCTAssertEqual(profiles["shapes-sd"]?["embedded"] as? Bool, true, "the embedded model is listed: \(profiles.keys.sorted())")
        try await check("sd1", placeholder: "a lighthouse on a cliff at sunset")
        try await browser.click("#model option[value='shapes-sd']")
        try await check("shapes-sd", placeholder: "a red circle on a blue background")
        if let profile = profiles["shapes-sd"]?["profile"] as? [String: Any] {
            XCTAssertEqual(profile["width"] as? Int, 128, "the embedded model's native size")
        }
        try await browser.click("#model option[value='sd1']")
        try await check("sd1", placeholder: "a lighthouse on a cliff at sunset")
    }

    /// Fills the form, draws, generates and waits for the image; returns the job id the page shows.
    private static func drive(
        _ browser: WebDriverSession, page: URL, folder: URL, profiles: [String: [String: Any]]
    ) async throws -> String {
        let pageState = {
            "\(try await browser.execute("return document.getElementById('status-region').innerText + ' | ' + document.getElementById('error-message').innerText"))"
        }
        try await browser.navigate(to: page)
        _ = try await browser.wait("the model lists to load", timeout: 20, state: pageState) {
            let ready = try await browser.execute("return document.body.dataset.ready") as? String
            if ready == "error" {
                throw WebDriverError(description: "the page could not load its lists: \(try await pageState())")
            }
            return ready == "true" ? true : nil
        }
        try await checkLayoutAndModelDefaults(browser, folder: folder, profiles: profiles)

        try await browser.type("a red circle on a blue background", into: "#prompt")
        try await browser.type("32", into: "#width", clearing: true)
        try await browser.type("32", into: "#height", clearing: true)
        try await browser.type("\(steps)", into: "#steps", clearing: true)
        try await browser.click("#sampler option[value='euler_a']")
        try await browser.type("42", into: "#seed", clearing: true)

        // A LoRA with a weight.
        try await browser.click("#lora-select option[value='sd1-lora']")
        try await browser.type("0.8", into: "#lora-weight", clearing: true)
        try await browser.click("#lora-add")
        let chips = try await browser.execute(
            "return [...document.querySelectorAll('#lora-list li')].map(li => li.dataset.name + '@' + li.querySelector('input').value)"
        )
        XCTAssertEqual(chips as? [String], ["sd1-lora@0.8"])

        // The ControlNet, preprocessor "none", and an outline drawn with the mouse.
        try await browser.click("#controlnet-model option[value='sd1-controlnet']")
        try await browser.click("#controlnet-preprocessor option[value='none']")
        let canvas = try await browser.element("#controlnet-canvas")
        try await browser.execute("arguments[0].scrollIntoView({block: 'center'})", [browser.reference(canvas)])
        let origin = browser.reference(canvas)
        var actions: [[String: Any]] = [
            ["type": "pointerMove", "duration": 0, "origin": origin, "x": -70, "y": 60], ["type": "pointerDown", "button": 0],
        ]
        // A triangle inside the drawing area (200 px wide on a wide window).
        for (x, y) in [(0, -75), (70, 60), (-70, 60)] {
            actions.append(["type": "pointerMove", "duration": 60, "origin": origin, "x": x, "y": y])
        }
        actions.append(["type": "pointerUp", "button": 0])
        try await browser.pointerActions(actions)
        let whitePixels =
            try await browser.execute(
                """
                const c = document.getElementById('controlnet-canvas');
                const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                let n = 0; for (let i = 0; i < d.length; i += 4) if (d[i] > 128) n++;
                return n;
                """) as? Int
        XCTAssertGreaterThan(whitePixels ?? 0, 1000, "the pointer strokes did not draw on the canvas")

        // Generate and follow the progress until the image is shown.
        try await browser.execute("window.scrollTo(0, 0)")
        try await browser.click("#generate")
        var seenProgress: Set<String> = []
        let outcome = try await browser.wait("the result image", timeout: 60, state: pageState) { () -> [String: Any]? in
            let state =
                try await browser.execute(
                    """
                    const p = document.getElementById('progress');
                    return {
                      status: document.getElementById('job-status').dataset.status,
                      job: document.getElementById('job-id').dataset.id || '',
                      value: p.value, max: p.max, updates: Number(p.dataset.updates || 0),
                      text: document.getElementById('progress-text').textContent,
                      error: document.getElementById('error-message').textContent,
                      images: [...document.querySelectorAll('#results img')].map(i => i.complete ? i.naturalWidth : 0),
                    };
                    """) as? [String: Any] ?? [:]
            seenProgress.insert(state["text"] as? String ?? "")
            let status = state["status"] as? String ?? ""
            if status == "failed" || status == "cancelled" {
                throw WebDriverError(description: "the job ended as \(status): \(state["error"] ?? "")")
            }
            let widths = state["images"] as? [Int] ?? []
            return status == "succeeded" && !widths.isEmpty && widths.allSatisfy { $0 > 0 } ? state : nil
        }
        XCTAssertEqual(outcome["images"] as? [Int], [32], "one 32-pixel-wide result image")
        XCTAssertEqual(
            outcome["text"] as? String, "\(steps)/\(steps)", "progress text after completion (seen: \(seenProgress.sorted()))")
        XCTAssertEqual((outcome["value"] as? NSNumber)?.intValue, steps, "progress bar value")
        XCTAssertEqual((outcome["max"] as? NSNumber)?.intValue, steps, "progress bar maximum")
        XCTAssertGreaterThanOrEqual(
            outcome["updates"] as? Int ?? 0, 1, "the progress bar was never updated from the event stream")

        // The whole page in one screenshot: grow the window to the page's height, then scroll to the top.
        let sizes =
            try await browser.execute(
                "return [document.documentElement.scrollHeight, window.outerHeight - window.innerHeight, window.outerWidth]")
            as? [Int] ?? []
        if sizes.count == 3 {
            try await browser.setWindowSize(width: sizes[2], height: min(sizes[0] + sizes[1], 2400))
        }
        try await browser.execute("window.scrollTo(0, 0)")
        let screenshot = try await browser.screenshot()
        XCTAssertEqual(Array(screenshot.prefix(4)), [0x89, 0x50, 0x4E, 0x47], "the screenshot is a PNG")
        try screenshot.write(to: folder.appendingPathComponent("web-page.png"))
        print("web page screenshot: \(folder.appendingPathComponent("web-page.png").path)")
        // The committed picture in the docs is refreshed on request only, so test runs leave the tree clean.
        if ProcessInfo.processInfo.environment["SWIFTDIFFUSION_UPDATE_SCREENSHOT"] == "1" {
            let documented = repositoryRoot.appendingPathComponent("docs/images/web-page.png")
            try FileManager.default.createDirectory(at: documented.deletingLastPathComponent(), withIntermediateDirectories: true)
            try screenshot.write(to: documented)
            print("updated \(documented.path)")
        }

        return try XCTUnwrap(outcome["job"] as? String, "the page shows no job id")
    }

    /// The job the page submitted, as the API reports it.
    private static func checkJob(_ id: String, client: some TestClientProtocol) async throws {
        let response = try await client.execute(uri: "/v1/images/jobs/\(id)", method: .get)
        XCTAssertEqual(response.status, .ok)
        let job = response.body.jsonObject
        XCTAssertEqual(job["status"] as? String, "succeeded")
        let request = try XCTUnwrap(job["request"] as? [String: Any])
        XCTAssertEqual(request["prompt"] as? String, "a red circle on a blue background")
        XCTAssertEqual(request["width"] as? Int, 32)
        XCTAssertEqual(request["height"] as? Int, 32)
        XCTAssertEqual(request["steps"] as? Int, steps)
        XCTAssertEqual(request["seed"] as? Int, 42)
        XCTAssertEqual(request["controls"] as? [String], ["sd1-controlnet"])
        let loras = try XCTUnwrap(request["loras"] as? [[String: Any]])
        XCTAssertEqual(loras.first?["name"] as? String, "sd1-lora")
        XCTAssertEqual((loras.first?["weight"] as? NSNumber)?.doubleValue ?? 0, 0.8, accuracy: 1e-6)
        XCTAssertEqual((job["results"] as? [Any])?.count, 1)
    }

    private static var repositoryRoot: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    }
}

/// Set once from the test's concurrent closure, read after it.
private final class FailureFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var value = false
    var isSet: Bool { lock.withLock { value } }
    func set() { lock.withLock { value = true } }
}

/// The page's files as the server serves them, and the query-string token of the event stream.
final class WebPageServingTests: XCTestCase {
    func testServesThePageAndItsFiles() async throws {
        try await TestServer.withApplication { client in
            let page = try await client.execute(uri: "/", method: .get)
            XCTAssertEqual(page.status, .ok)
            XCTAssertEqual(page.headers[.contentType], "text/html; charset=utf-8")
            let html = String(buffer: page.body)
            XCTAssertTrue(html.contains("ui/app.js") && html.contains("ui/style.css"))
            for (file, type) in [("app.js", "text/javascript; charset=utf-8"), ("style.css", "text/css; charset=utf-8")] {
                let response = try await client.execute(uri: "/ui/\(file)", method: .get)
                XCTAssertEqual(response.status, .ok, file)
                XCTAssertEqual(response.headers[.contentType], type, file)
                XCTAssertGreaterThan(response.body.readableBytes, 1000, file)
            }
            let missing = try await client.execute(uri: "/ui/nothing.js", method: .get)
            XCTAssertEqual(missing.status, .notFound)
        }
    }

    /// Every element the script looks up by id exists in the page, and nothing is loaded from elsewhere.
    func testScriptAndPageAgreeOnElementIDs() throws {
        let html = try Self.resource("index.html")
        let script = try Self.resource("app.js")
        let ids = Set(Self.matches(of: #"\$\("([A-Za-z0-9-]+)"\)"#, in: script))
        XCTAssertGreaterThan(ids.count, 30)
        let declared = Set(Self.matches(of: #"id="([A-Za-z0-9-]+)""#, in: html))
        XCTAssertEqual(ids.subtracting(declared).sorted(), [], "ids the script uses but the page lacks")
        for text in [html, script, try Self.resource("style.css")] {
            XCTAssertFalse(text.contains("http://") || text.contains("https://") || text.contains("//cdn"), "external resource")
        }
    }

    func testEventStreamAcceptsAccessTokenQueryParameter() async throws {
        var configuration = ServerConfiguration()
        configuration.tokens = ["s3cret+/="]
        let token = "s3cret%2B%2F%3D"  // URL-encoded, as URLSearchParams sends it
        let bearer: HTTPFields = [.authorization: "Bearer s3cret+/="]
        try await TestServer.withApplication(server: configuration) { client in
            let submitted = try await client.execute(
                uri: "/v1/images/jobs", method: .post, headers: bearer.merging([.contentType: "application/json"]),
                body: TestServer.json(["prompt": "a dot", "width": 32, "height": 32, "steps": 2]))
            XCTAssertEqual(submitted.status, .accepted)
            let id = try XCTUnwrap(submitted.body.jsonObject["id"] as? String)

            let events = try await client.execute(uri: "/v1/images/jobs/\(id)/events?access_token=\(token)", method: .get)
            XCTAssertEqual(events.status, .ok)
            XCTAssertEqual(events.headers[.contentType], "text/event-stream")
            XCTAssertTrue(String(buffer: events.body).contains("event: completed"), String(buffer: events.body))

            let wrong = try await client.execute(uri: "/v1/images/jobs/\(id)/events?access_token=nope", method: .get)
            XCTAssertEqual(wrong.status, .unauthorized)
            XCTAssertEqual(wrong.headers[.wwwAuthenticate], "Bearer")
            // Only the events route takes the query parameter.
            let status = try await client.execute(uri: "/v1/images/jobs/\(id)?access_token=\(token)", method: .get)
            XCTAssertEqual(status.status, .unauthorized)
            let image = try await client.execute(uri: "/v1/images/jobs/\(id)/images/0?access_token=\(token)", method: .get)
            XCTAssertEqual(image.status, .unauthorized)
            // The header, when sent, is what counts.
            let badHeader = try await client.execute(
                uri: "/v1/images/jobs/\(id)/events?access_token=\(token)", method: .get, headers: [.authorization: "Bearer nope"])
            XCTAssertEqual(badHeader.status, .unauthorized)
        }
    }

    static func resource(_ name: String) throws -> String {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
            .appendingPathComponent("Sources/Server/Resources/\(name)")
        return try String(contentsOf: url, encoding: .utf8)
    }

    static func matches(of pattern: String, in text: String) -> [String] {
        let expression = try! NSRegularExpression(pattern: pattern)
        return expression.matches(in: text, range: NSRange(text.startIndex..., in: text)).compactMap {
            Range($0.range(at: 1), in: text).map { String(text[$0]) }
        }
    }
}

extension HTTPFields {
    fileprivate func merging(_ other: HTTPFields) -> HTTPFields {
        var fields = self
        for field in other { fields.append(field) }
        return fields
    }
}
