import Foundation
import Hummingbird
import HummingbirdTesting
import Serving
import XCTest

/// The native API end to end: submit, follow to completion, fetch the image.
final class NativeAPISmokeTests: XCTestCase {
    func testSubmitPollAndFetchImage() async throws {
        try await TestServer.withApplication { client in
            let submitted = try await client.execute(
                uri: "/v1/images/jobs", method: .post, headers: [.contentType: "application/json"],
                body: TestServer.json(["prompt": "a red circle", "width": 32, "height": 32, "steps": 3, "seed": 4]))
            XCTAssertEqual(submitted.status, .accepted)
            let id = try XCTUnwrap(submitted.body.jsonObject["id"] as? String)
            var status = ""
            for _ in 0..<200 {
                let response = try await client.execute(uri: "/v1/images/jobs/\(id)", method: .get)
                status = response.body.jsonObject["status"] as? String ?? ""
                if status == "succeeded" || status == "failed" { break }
                try await Task.sleep(for: .milliseconds(20))
            }
            XCTAssertEqual(status, "succeeded")
            let image = try await client.execute(uri: "/v1/images/jobs/\(id)/images/0", method: .get)
            XCTAssertEqual(image.status, .ok)
            XCTAssertEqual(image.headers[.contentType], "image/png")
            XCTAssertEqual(Array(image.body.readableBytesView.prefix(4)), [0x89, 0x50, 0x4E, 0x47])
        }
    }
}
