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

        var logger = Logger(label: "browser-test")
        logger.logLevel = .warning
        let engine = TestServer.engine()
        let application = Application(
            router: ServerApplication.router(engine: engine, configuration: ServerConfiguration()),
            configuration: .init(address: .hostname("127.0.0.1", port: 0), serverName: "SwiftDiffusion"),
            services: [engine], logger: logger)

        try await application.test(.live) { client in
            let port = try XCTUnwrap(client.port, "the live test server has no port")
            let browser = try await WebDriverSession(tools: tools, folder: folder, windowSize: (1180, 1040))
            do {
                let jobID = try await Self.drive(browser, page: URL(string: "http://127.0.0.1:\(port)/")!, folder: folder)
                try await Self.checkJob(jobID, client: client)
                await browser.close()
            } catch {
                let log = browser.logTail
                await browser.close()
                XCTFail("browser test failed: \(error)\nchromedriver log (last lines):\n\(log)")
                throw error
            }
        }
    }

    /// Fills the form, draws, generates and waits for the image; returns the job id the page shows.
    private static func drive(_ browser: WebDriverSession, page: URL, folder: URL) async throws -> String {
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

        try await browser.type("a red circle on a blue background", into: "#prompt")
        try await browser.type("32", into: "#width", clearing: true)
        try await browser.type("32", into: "#height", clearing: true)
        try await browser.type("\(steps)", into: "#steps", clearing: true)
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
            ["type": "pointerMove", "duration": 0, "origin": origin, "x": -100, "y": 80], ["type": "pointerDown", "button": 0],
        ]
        for (x, y) in [(0, -110), (100, 80), (-100, 80)] {
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
