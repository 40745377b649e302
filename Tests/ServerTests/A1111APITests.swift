import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Imaging
import ParityTesting
import Serving
import XCTest

/// Requests and response readers for the A1111 routes.
struct A1111Client: Sendable {
    let client: any TestClientProtocol

    init(_ client: any TestClientProtocol) {
        self.client = client
    }

    func post(_ uri: String, _ object: Any) async throws -> TestResponse {
        try await client.execute(
            uri: uri, method: .post, headers: [.contentType: "application/json"], body: TestServer.json(object))
    }

    func post(_ uri: String, raw: String) async throws -> TestResponse {
        try await client.execute(
            uri: uri, method: .post, headers: [.contentType: "application/json"], body: ByteBuffer(string: raw))
    }

    func get(_ uri: String) async throws -> TestResponse {
        try await client.execute(uri: uri, method: .get)
    }

    /// GET `uri` and parse the JSON body.
    func json(_ uri: String) async throws -> Any? {
        A1111Client.parse(try await get(uri))
    }

    func object(_ uri: String) async throws -> [String: Any] {
        let value = try await json(uri)
        return try XCTUnwrap(value as? [String: Any], "\(uri): \(value ?? "nil")")
    }

    func list(_ uri: String) async throws -> [[String: Any]] {
        let value = try await json(uri)
        return try XCTUnwrap(value as? [[String: Any]], "\(uri): \(value ?? "nil")")
    }

    /// POST a txt2img body and return its parsed `info`.
    func txt2imgInfo(_ body: [String: Any]) async throws -> [String: Any] {
        try A1111Client.info(try await post("/sdapi/v1/txt2img", body))
    }

    static func parse(_ response: TestResponse) -> Any? {
        try? JSONSerialization.jsonObject(with: Data(buffer: response.body), options: [.fragmentsAllowed])
    }

    /// `info`, a JSON object inside a string.
    static func info(_ response: TestResponse) throws -> [String: Any] {
        let text = try XCTUnwrap(response.body.jsonObject["info"] as? String)
        return try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
    }

    static func images(_ response: TestResponse) throws -> [Data] {
        try (response.body.jsonObject["images"] as? [String] ?? []).map { try XCTUnwrap(Data(base64Encoded: $0)) }
    }
}

/// The AUTOMATIC1111-compatible surface end to end on the tiny fixture models: a request exactly as the `webuiapi`
/// Python client sends it, img2img, batch seeds, progress and interrupt, options, the listings, and 4xx errors.
final class A1111APITests: XCTestCase {
    static let controlImage = try! Data(contentsOf: Golden.fixturesDirectory.appendingPathComponent("pipelines/control_ring.png"))
    static let initImage = try! Data(contentsOf: Golden.fixturesDirectory.appendingPathComponent("pipelines/init_image.png"))

    /// `webuiapi.WebUIApi().txt2img(prompt=..., negative_prompt="blurry", seed=1234, batch_size=2, steps=4, width=32,
    /// height=32, sampler_name="Euler a", controlnet_units=[ControlNetUnit(image=ring, module="none",
    /// model="sd1-controlnet [abcd1234]", weight=0.9)])` as it goes over the wire (webuiapi 0.9.x `txt2img` payload
    /// and `ControlNetUnit.to_dict()`, every default included).
    static let webuiapiPayload = #"""
        {
          "enable_hr": false,
          "hr_scale": 2,
          "hr_upscaler": "Latent",
          "hr_second_pass_steps": 0,
          "hr_resize_x": 0,
          "hr_resize_y": 0,
          "hr_checkpoint_name": null,
          "hr_sampler_name": null,
          "hr_scheduler": null,
          "hr_prompt": "",
          "hr_negative_prompt": "",
          "denoising_strength": 0.7,
          "firstphase_width": 0,
          "firstphase_height": 0,
          "prompt": "a (red:1.2) circle, <lora:sd1-lora:0.8>",
          "styles": [],
          "seed": 1234,
          "subseed": -1,
          "subseed_strength": 0.0,
          "seed_resize_from_h": 0,
          "seed_resize_from_w": 0,
          "batch_size": 2,
          "n_iter": 1,
          "steps": 4,
          "cfg_scale": 7.0,
          "width": 32,
          "height": 32,
          "restore_faces": false,
          "tiling": false,
          "do_not_save_samples": false,
          "do_not_save_grid": false,
          "negative_prompt": "blurry",
          "eta": 1.0,
          "s_churn": 0,
          "s_tmax": 0,
          "s_tmin": 0,
          "s_noise": 1,
          "override_settings": {},
          "override_settings_restore_afterwards": true,
          "sampler_name": "Euler a",
          "scheduler": "automatic",
          "sampler_index": "Euler a",
          "script_name": null,
          "script_args": [],
          "send_images": true,
          "save_images": false,
          "alwayson_scripts": {
            "ControlNet": {
              "args": [
                {
                  "image": "__CONTROL_IMAGE__",
                  "mask": null,
                  "module": "none",
                  "model": "sd1-controlnet [abcd1234]",
                  "weight": 0.9,
                  "resize_mode": "Resize and Fill",
                  "low_vram": false,
                  "processor_res": 512,
                  "threshold_a": 64,
                  "threshold_b": 64,
                  "guidance_start": 0.0,
                  "guidance_end": 1.0,
                  "control_mode": "Balanced",
                  "pixel_perfect": false,
                  "hr_option": "Both",
                  "enabled": true
                }
              ]
            }
          }
        }
        """#

    /// A small txt2img body.
    static func small(_ extra: [String: Any] = [:]) -> [String: Any] {
        ["prompt": "a red circle", "steps": 3, "width": 32, "height": 32, "seed": 5].merging(extra) { $1 }
    }

    // MARK: - Generation

    func testWebuiapiPayloadWithLoRATagAndControlNetUnit() async throws {
        let payload = A1111APITests.webuiapiPayload.replacingOccurrences(
            of: "__CONTROL_IMAGE__", with: A1111APITests.controlImage.base64EncodedString())
        try await TestServer.withApplication { client in
            let api = A1111Client(client)
            let response = try await api.post("/sdapi/v1/txt2img", raw: payload)
            XCTAssertEqual(response.status, .ok, String(buffer: response.body))
            let images = try A1111Client.images(response)
            XCTAssertEqual(images.count, 2)
            for png in images {
                XCTAssertEqual(ImageCodec.sniff(png), .png)
                let image = try ImageCodec.decode(png)
                XCTAssertEqual([image.width, image.height], [32, 32])
            }
            let info = try A1111Client.info(response)
            XCTAssertEqual(info["seed"] as? Int, 1234)
            XCTAssertEqual(info["all_seeds"] as? [Int], [1234, 1235])
            XCTAssertEqual(
                info["all_prompts"] as? [String],
                ["a (red:1.2) circle, <lora:sd1-lora:0.8>", "a (red:1.2) circle, <lora:sd1-lora:0.8>"])
            XCTAssertEqual(info["negative_prompt"] as? String, "blurry")
            XCTAssertEqual(info["sampler_name"] as? String, "Euler a")
            XCTAssertEqual(info["sd_model_name"] as? String, "sd1")
            XCTAssertEqual((info["sd_model_hash"] as? String)?.count, 10)
            XCTAssertEqual(info["batch_size"] as? Int, 2)
            XCTAssertEqual(info["steps"] as? Int, 4)
            XCTAssertEqual(info["clip_skip"] as? Int, 1)
            XCTAssertNil(
                info["ignored_settings"], "the webuiapi defaults set nothing unsupported: \(info["ignored_settings"] ?? "")")
            let infotexts = try XCTUnwrap(info["infotexts"] as? [String])
            XCTAssertEqual(infotexts.count, 2)
            for (index, text) in infotexts.enumerated() {
                XCTAssertTrue(text.contains("Seed: \(1234 + index),"), text)
                XCTAssertTrue(text.contains("Sampler: Euler a"), text)
                XCTAssertTrue(text.contains("sd1-lora: 0.8"), text)
                XCTAssertTrue(text.contains("ControlNet 0: \"sd1-controlnet"), text)
                XCTAssertEqual(ImageCodec.textChunks(of: images[index])["parameters"], text)
            }
            let parameters = try XCTUnwrap(response.body.jsonObject["parameters"] as? [String: Any])
            XCTAssertEqual(parameters["prompt"] as? String, "a (red:1.2) circle, <lora:sd1-lora:0.8>")
            XCTAssertEqual(parameters["steps"] as? Int, 4)
            XCTAssertEqual(parameters["batch_size"] as? Int, 2)
            XCTAssertEqual(parameters["sampler_name"] as? String, "Euler a")
            XCTAssertEqual(parameters["hr_upscaler"] as? String, "Latent")
            XCTAssertNotNil((parameters["alwayson_scripts"] as? [String: Any])?["ControlNet"])
            XCTAssertNotNil(parameters["refiner_checkpoint"], "A1111's fields not sent are echoed with their defaults")
        }
    }

    func testLoRATagsAndControlModesChangeTheImage() async throws {
        try await TestServer.withApplication { client in
            let api = A1111Client(client)
            let plain = try A1111Client.images(try await api.post("/sdapi/v1/txt2img", A1111APITests.small()))
            let lora = try A1111Client.images(
                try await api.post("/sdapi/v1/txt2img", A1111APITests.small(["prompt": "a red circle <lora:sd1-lora:1>"])))
            let loraOff = try A1111Client.images(
                try await api.post("/sdapi/v1/txt2img", A1111APITests.small(["prompt": "a red circle <lora:sd1-lora:0>"])))
            XCTAssertNotEqual(try ImageCodec.decode(plain[0]), try ImageCodec.decode(lora[0]))
            XCTAssertEqual(try ImageCodec.decode(plain[0]), try ImageCodec.decode(loraOff[0]), "a weight-0 LoRA changes nothing")

            // Balanced, "My prompt is more important" (soft injection), "ControlNet is more important" (guess mode),
            // by label and by index: three different images, each the same under both spellings.
            var decoded: [RGBImage] = []
            for (label, index) in [("Balanced", 0), ("My prompt is more important", 1), ("ControlNet is more important", 2)] {
                var pair: [RGBImage] = []
                for mode in [label as Any, index as Any] {
                    let unit: [String: Any] = [
                        "model": "sd1-controlnet", "image": A1111APITests.controlImage.base64EncodedString(),
                        "control_mode": mode,
                        "weight": 2,
                    ]
                    let response = try await api.post(
                        "/sdapi/v1/txt2img", A1111APITests.small(["alwayson_scripts": ["controlnet": ["args": [unit]]]]))
                    XCTAssertEqual(response.status, .ok, String(buffer: response.body))
                    pair.append(try ImageCodec.decode(try A1111Client.images(response)[0]))
                }
                XCTAssertEqual(pair[0], pair[1], label)
                decoded.append(pair[0])
            }
            XCTAssertNotEqual(decoded[0], decoded[1])
            XCTAssertNotEqual(decoded[1], decoded[2])
            XCTAssertNotEqual(decoded[0], decoded[2])
            XCTAssertNotEqual(decoded[0], try ImageCodec.decode(plain[0]), "the unit acts")
        }
    }

    func testBatchImageEqualsSingleRequestWithSeedPlusIndex() async throws {
        try await TestServer.withApplication { client in
            let api = A1111Client(client)
            let batch = try await api.post(
                "/sdapi/v1/txt2img", A1111APITests.small(["seed": 100, "batch_size": 2, "n_iter": 2, "sampler_name": "Euler a"]))
            XCTAssertEqual(batch.status, .ok, String(buffer: batch.body))
            let batchImages = try A1111Client.images(batch)
            XCTAssertEqual(batchImages.count, 4)
            XCTAssertEqual(try A1111Client.info(batch)["all_seeds"] as? [Int], [100, 101, 102, 103])
            for index in 0..<4 {
                let single = try await api.post(
                    "/sdapi/v1/txt2img", A1111APITests.small(["seed": 100 + index, "sampler_name": "Euler a"]))
                let image = try A1111Client.images(single)[0]
                // The same noise; the batched UNet differs from the one-image one only by float rounding, so pixels
                // agree to within one level (and here exactly).
                let (fromBatch, alone) = (try ImageCodec.decode(batchImages[index]), try ImageCodec.decode(image))
                let worst = zip(fromBatch.pixels, alone.pixels).map { abs(Int($0) - Int($1)) }.max() ?? 0
                XCTAssertLessThanOrEqual(worst, 1, "image \(index)")
                let other = try await api.post(
                    "/sdapi/v1/txt2img", A1111APITests.small(["seed": 200 + index, "sampler_name": "Euler a"]))
                XCTAssertNotEqual(try ImageCodec.decode(try A1111Client.images(other)[0]), alone, "another seed, another image")
                XCTAssertTrue(
                    ImageCodec.textChunks(of: batchImages[index])["parameters"]?.contains("Seed: \(100 + index),") ?? false)
            }
        }
    }

    func testImageToImage() async throws {
        try await TestServer.withApplication { client in
            let api = A1111Client(client)
            let body: [String: Any] = [
                "init_images": ["data:image/png;base64," + A1111APITests.initImage.base64EncodedString()],
                "denoising_strength": 0.5,
                "prompt": "a blue square", "steps": 4, "width": 64, "height": 32, "resize_mode": 1, "seed": 9,
                "sampler_name": "DPM++ 2M",
                "scheduler": "Karras",
            ]
            let response = try await api.post("/sdapi/v1/img2img", body)
            XCTAssertEqual(response.status, .ok, String(buffer: response.body))
            let images = try A1111Client.images(response)
            XCTAssertEqual(images.count, 1)
            let image = try ImageCodec.decode(images[0])
            XCTAssertEqual([image.width, image.height], [64, 32])
            let info = try A1111Client.info(response)
            XCTAssertEqual(info["denoising_strength"] as? Double, 0.5)
            XCTAssertEqual(info["sampler_name"] as? String, "DPM++ 2M Karras")
            XCTAssertTrue((try XCTUnwrap(info["infotexts"] as? [String]))[0].contains("Denoising strength: 0.5"))
            let parameters = try XCTUnwrap(response.body.jsonObject["parameters"] as? [String: Any])
            XCTAssertTrue(parameters["init_images"] is NSNull, "init images are not echoed unless include_init_images")
            XCTAssertEqual(parameters["include_init_images"] as? Bool, false)

            // A ControlNet unit without an image uses the init image in img2img, as the extension does.
            var withUnit = body
            withUnit["width"] = 32
            withUnit["alwayson_scripts"] = ["controlnet": ["args": [["model": "sd1-controlnet", "module": "invert"]]]]
            let controlled = try await api.post("/sdapi/v1/img2img", withUnit)
            XCTAssertEqual(controlled.status, .ok, String(buffer: controlled.body))

            let missing = try await api.post("/sdapi/v1/img2img", ["prompt": "x", "steps": 2])
            XCTAssertEqual(missing.status, .badRequest)
        }
    }

    func testUnknownFieldsAndUnsupportedSettingsAreIgnored() async throws {
        try await TestServer.withApplication { client in
            let api = A1111Client(client)
            let response = try await api.post(
                "/sdapi/v1/txt2img",
                A1111APITests.small([
                    "totally_unknown": ["nested": 1], "enable_hr": true, "restore_faces": true, "styles": ["my style"],
                    "subseed_strength": 0.3,
                    "steps": 3.0, "cfg_scale": 6, "width": "32",
                    "override_settings": ["sd_model_checkpoint": "sd2 [0000000000]", "sd_vae": "x.pt"],
                    "alwayson_scripts": ["ADetailer": ["args": [false]], "Dynamic Prompts": ["args": [true]]],
                    "prompt": "a <hypernet:thing:1> circle",
                ]))
            XCTAssertEqual(response.status, .ok, String(buffer: response.body))
            let info = try A1111Client.info(response)
            XCTAssertEqual(info["sd_model_name"] as? String, "sd2")
            XCTAssertEqual(info["steps"] as? Int, 3)
            let ignored = try XCTUnwrap(info["ignored_settings"] as? [String])
            for expected in [
                "enable_hr", "restore_faces", "styles", "subseed_strength", "override_settings.sd_vae",
                "alwayson_scripts.Dynamic Prompts", "<hypernet:",
            ] {
                XCTAssertTrue(ignored.contains { $0.hasPrefix(expected) }, "\(expected) not in \(ignored)")
            }
            XCTAssertFalse(ignored.contains { $0.contains("ADetailer") }, "a switched-off script is not a notice")
            XCTAssertFalse(
                ignored.contains { $0.contains("totally_unknown") }, "unknown keys are silently ignored, as pydantic does")
        }
    }

    func testBadValuesAre4xxWithAMessage() async throws {
        try await TestServer.withApplication { client in
            let api = A1111Client(client)
            func expect(
                _ body: [String: Any], _ status: HTTPResponse.Status, _ fragment: String, route: String = "txt2img"
            ) async throws {
                let response = try await api.post("/sdapi/v1/\(route)", body)
                XCTAssertEqual(response.status, status, "\(body): \(String(buffer: response.body))")
                let detail = response.body.jsonObject["detail"] as? String ?? ""
                XCTAssertTrue(detail.contains(fragment), "'\(detail)' should mention '\(fragment)'")
            }
            try await expect(A1111APITests.small(["steps": -5]), .badRequest, "steps")
            try await expect(A1111APITests.small(["steps": "many"]), .unprocessableContent, "steps")
            try await expect(A1111APITests.small(["sampler_name": "Warp Drive"]), .notFound, "Sampler not found")
            try await expect(A1111APITests.small(["prompt": "a <lora:no-such-lora:0.5> cat"]), .notFound, "no-such-lora")
            try await expect(A1111APITests.small(["prompt": "a <lora:sd1-lora:heavy> cat"]), .badRequest, "heavy")
            try await expect(A1111APITests.small(["prompt": "(a:1.2.3)"]), .badRequest, "1.2.3")
            try await expect(
                A1111APITests.small(["override_settings": ["sd_model_checkpoint": "nope"]]), .notFound, "Model not found")
            try await expect(A1111APITests.small(["batch_size": 0]), .badRequest, "batch_size")
            let corrupt: [String: Any] = ["args": [["model": "sd1-controlnet", "image": "%%%%", "enabled": true]]]
            try await expect(A1111APITests.small(["alwayson_scripts": ["controlnet": corrupt]]), .badRequest, "base64")
            let garbage: [String: Any] = [
                "args": [["model": "sd1-controlnet", "image": Data("not an image".utf8).base64EncodedString()]]
            ]
            try await expect(A1111APITests.small(["alwayson_scripts": ["controlnet": garbage]]), .badRequest, "ControlNet image")
            let imageless: [String: Any] = ["args": [["model": "sd1-controlnet", "enabled": true, "image": ""]]]
            try await expect(A1111APITests.small(["alwayson_scripts": ["controlnet": imageless]]), .badRequest, "no image")
            let unknownModel: [String: Any] = [
                "args": [
                    ["model": "control_v11p_sd15_canny [d14c016b]", "image": A1111APITests.controlImage.base64EncodedString()]
                ]
            ]
            try await expect(
                A1111APITests.small(["alwayson_scripts": ["controlnet": unknownModel]]), .notFound, "control_v11p_sd15_canny")
            let unknownModule: [String: Any] = [
                "args": [
                    ["model": "sd1-controlnet", "module": "openpose", "image": A1111APITests.controlImage.base64EncodedString()]
                ]
            ]
            try await expect(A1111APITests.small(["alwayson_scripts": ["controlnet": unknownModule]]), .badRequest, "openpose")
            try await expect(["init_images": ["%%%"], "prompt": "x"], .badRequest, "init_images", route: "img2img")
            // Disabled units are skipped whatever they hold.
            let disabled: [String: Any] = ["args": [["model": "nope", "image": "", "enabled": false]]]
            let ok = try await api.post("/sdapi/v1/txt2img", A1111APITests.small(["alwayson_scripts": ["controlnet": disabled]]))
            XCTAssertEqual(ok.status, .ok)
            let malformed = try await api.post("/sdapi/v1/txt2img", raw: "{\"prompt\": ")
            XCTAssertEqual(malformed.status, .unprocessableContent)
            let empty = try await api.post("/sdapi/v1/txt2img", raw: "")
            XCTAssertEqual(empty.status, .unprocessableContent, "a missing body is FastAPI's 422, not a default 512x512 job")
        }
    }

    // MARK: - Progress, interrupt, queue

    func testProgressAndInterruptWhileAJobRuns() async throws {
        let engine = TestServer.engine()
        try await TestServer.withApplication(engine: engine) { client in
            let api = A1111Client(client)
            let idle = try await api.object("/sdapi/v1/progress")
            XCTAssertEqual(idle["progress"] as? Double, 0)
            XCTAssertEqual((idle["state"] as? [String: Any])?["job_count"] as? Int, 0)

            let long = Task {
                try await api.post(
                    "/sdapi/v1/txt2img",
                    A1111APITests.small(["steps": 150, "batch_size": 8, "width": 64, "height": 64, "sampler_name": "Euler"]))
            }
            var seen: [String: Any]?
            for _ in 0..<2000 {
                let progress = try await api.object("/sdapi/v1/progress")
                let state = progress["state"] as? [String: Any] ?? [:]
                if (state["sampling_step"] as? Int ?? 0) >= 1 {
                    seen = progress
                    break
                }
                try await Task.sleep(for: .milliseconds(5))
            }
            let running = try XCTUnwrap(seen, "the job was never seen sampling")
            let state = try XCTUnwrap(running["state"] as? [String: Any])
            XCTAssertEqual(state["job_count"] as? Int, 1)
            XCTAssertEqual(state["sampling_steps"] as? Int, 150)
            XCTAssertEqual(state["job"] as? String, "scripts_txt2img")
            XCTAssertGreaterThan(running["progress"] as? Double ?? 0, 0.01)
            XCTAssertLessThan(running["progress"] as? Double ?? 1, 1)
            XCTAssertNotNil(running["eta_relative"] as? Double)
            XCTAssertTrue(running["current_image"] is NSNull)

            let interrupt = try await api.post("/sdapi/v1/interrupt", [String: Any]())
            XCTAssertEqual(interrupt.status, .ok)
            let response = try await long.value
            XCTAssertEqual(response.status, .ok)
            XCTAssertEqual(try A1111Client.images(response).count, 0)
            XCTAssertEqual(try A1111Client.info(response)["interrupted"] as? Bool, true)
            let after = try await api.object("/sdapi/v1/progress")
            XCTAssertEqual((after["state"] as? [String: Any])?["job_count"] as? Int, 0)
        }
    }

    func testQueueFullIs429WithRetryAfter() async throws {
        var configuration = EngineConfiguration()
        configuration.queueCapacity = 1
        let engine = TestServer.engine(configuration: configuration)
        try await TestServer.withApplication(engine: engine) { client in
            let api = A1111Client(client)
            let long = Task {
                try await api.post(
                    "/sdapi/v1/txt2img", A1111APITests.small(["steps": 150, "batch_size": 8, "width": 64, "height": 64]))
            }
            var tries = 0
            while await engine.currentJob == nil, tries < 5000 {
                try await Task.sleep(for: .milliseconds(2))
                tries += 1
            }
            let queued = Task { try await api.post("/sdapi/v1/txt2img", A1111APITests.small()) }
            tries = 0
            while await engine.queueDepth == 0, tries < 5000 {
                try await Task.sleep(for: .milliseconds(2))
                tries += 1
            }
            let refused = try await api.post("/sdapi/v1/txt2img", A1111APITests.small())
            XCTAssertEqual(refused.status, .tooManyRequests)
            XCTAssertNotNil(refused.headers[.retryAfter])
            _ = try await api.post("/sdapi/v1/skip", [String: Any]())
            let (first, second) = (try await long.value, try await queued.value)
            XCTAssertEqual(first.status, .ok)
            XCTAssertEqual(second.status, .ok)
        }
    }

    // MARK: - Options and listings

    func testOptionsSwitchTheModelAndClipSkip() async throws {
        try await TestServer.withApplication { client in
            let api = A1111Client(client)
            let before = try await api.object("/sdapi/v1/options")
            XCTAssertTrue((before["sd_model_checkpoint"] as? String)?.hasPrefix("sd1 [") ?? false)
            XCTAssertEqual(before["samples_format"] as? String, "png")
            XCTAssertEqual(before["CLIP_stop_at_last_layers"] as? Int, 1)

            let set = try await api.post(
                "/sdapi/v1/options",
                ["sd_model_checkpoint": "sd2 [1234567890]", "CLIP_stop_at_last_layers": 2, "some_ui_option": "x"])
            XCTAssertEqual(set.status, .ok)
            XCTAssertEqual(String(buffer: set.body), "null")
            XCTAssertEqual(set.headers[HTTPField.Name("X-Ignored-Options")!], "some_ui_option", "unknown keys are reported")
            let after = try await api.object("/sdapi/v1/options")
            XCTAssertTrue((after["sd_model_checkpoint"] as? String)?.hasPrefix("sd2 [") ?? false)
            XCTAssertEqual(after["CLIP_stop_at_last_layers"] as? Int, 2)
            XCTAssertNil(after["some_ui_option"], "unknown keys are not kept")

            let response = try await api.post("/sdapi/v1/txt2img", A1111APITests.small())
            XCTAssertEqual(response.status, .ok, String(buffer: response.body))
            let info = try A1111Client.info(response)
            XCTAssertEqual(info["sd_model_name"] as? String, "sd2")
            XCTAssertEqual(info["clip_skip"] as? Int, 2)
            XCTAssertTrue((info["infotexts"] as? [String])?.first?.contains("Clip skip: 2") ?? false)

            // A per-request override wins and, by default, does not stick.
            let override = try await api.post(
                "/sdapi/v1/txt2img", A1111APITests.small(["override_settings": ["sd_model_checkpoint": "sd1"]]))
            XCTAssertEqual(try A1111Client.info(override)["sd_model_name"] as? String, "sd1")
            let later = try await api.txt2imgInfo(A1111APITests.small())
            XCTAssertEqual(later["sd_model_name"] as? String, "sd2")
            // ... unless override_settings_restore_afterwards is false.
            _ = try await api.post(
                "/sdapi/v1/txt2img",
                A1111APITests.small([
                    "override_settings": ["sd_model_checkpoint": "sd1"], "override_settings_restore_afterwards": false,
                ]))
            let kept = try await api.txt2imgInfo(A1111APITests.small())
            XCTAssertEqual(kept["sd_model_name"] as? String, "sd1")

            let unknown = try await api.post("/sdapi/v1/options", ["sd_model_checkpoint": "missing"])
            XCTAssertEqual(unknown.status, .notFound)
        }
    }

    func testListingsAndHousekeepingRoutes() async throws {
        try await TestServer.withApplication { client in
            let api = A1111Client(client)
            let models = try await api.list("/sdapi/v1/sd-models")
            XCTAssertEqual(models.compactMap { $0["model_name"] as? String }, ["sd1", "sd2", "sdxl"])
            for model in models {
                let name = try XCTUnwrap(model["model_name"] as? String), hash = try XCTUnwrap(model["hash"] as? String)
                XCTAssertEqual(model["title"] as? String, "\(name) [\(hash)]")
                XCTAssertEqual(hash.count, 10)
                XCTAssertFalse((model["filename"] as? String ?? "/").contains("/"), "no server paths")
            }
            let loras = try await api.list("/sdapi/v1/loras")
            XCTAssertEqual(loras.compactMap { $0["name"] as? String }, ["sd1-lora", "sd1-lora-b"])
            XCTAssertTrue(
                loras.allSatisfy {
                    !($0["path"] as? String ?? "/").contains("/") && $0["metadata"] is [String: Any] && $0["alias"] is String
                })
            let samplers = try await api.list("/sdapi/v1/samplers")
            XCTAssertTrue(
                ["Euler", "Euler a", "DPM++ 2M", "DDIM"].allSatisfy { name in samplers.contains { $0["name"] as? String == name }
                })
            XCTAssertTrue(samplers.allSatisfy { $0["aliases"] is [String] && $0["options"] is [String: Any] })
            let schedulers = try await api.list("/sdapi/v1/schedulers")
            XCTAssertEqual(schedulers.compactMap { $0["name"] as? String }, ["automatic", "karras"])
            let upscalers = try await api.json("/sdapi/v1/upscalers")
            XCTAssertEqual((upscalers as? [Any])?.count, 0)
            let flags = try await api.object("/sdapi/v1/cmd-flags")
            XCTAssertEqual(flags["api"] as? Bool, true)
            let scripts = try await api.object("/sdapi/v1/scripts")
            XCTAssertNotNil(scripts["txt2img"] as? [Any])
            for route in ["refresh-checkpoints", "refresh-loras", "skip"] {
                let response = try await api.post("/sdapi/v1/\(route)", [String: Any]())
                XCTAssertEqual(response.status, .ok, route)
            }
            let interrupt = try await api.post("/sdapi/v1/interrupt", [String: Any]())
            XCTAssertEqual(interrupt.status, .ok)
            XCTAssertEqual(String(buffer: interrupt.body), "{}")

            let version = try await api.object("/controlnet/version")
            XCTAssertEqual(version["version"] as? Int, 2)
            let modelList = try await api.object("/controlnet/model_list?update=true")
            let controlnets = try XCTUnwrap(modelList["model_list"] as? [String])
            XCTAssertEqual(controlnets.count, 2)
            XCTAssertTrue(controlnets[0].hasPrefix("sd1-controlnet ["), "\(controlnets)")
            let moduleList = try await api.object("/controlnet/module_list")
            let modules = try XCTUnwrap(moduleList["module_list"] as? [String])
            XCTAssertEqual(modules, ["none", "canny", "threshold", "scribble", "invert"])
            let labelList = try await api.object("/controlnet/module_list?alias_names=true")
            let labels = try XCTUnwrap(labelList["module_list"] as? [String])
            XCTAssertTrue(labels.contains("invert (from white bg & black line)"))
            let controlNetSettings = try await api.object("/controlnet/settings")
            XCTAssertEqual(controlNetSettings["control_net_unit_count"] as? Int, 4)

            // A model title from the listing selects that model.
            let sdxlTitle = try XCTUnwrap(models.first { $0["model_name"] as? String == "sdxl" }?["title"] as? String)
            let sdxl = try await api.post(
                "/sdapi/v1/txt2img",
                A1111APITests.small(["override_settings": ["sd_model_checkpoint": sdxlTitle], "negative_prompt": ""]))
            XCTAssertEqual(sdxl.status, .ok, String(buffer: sdxl.body))
            XCTAssertEqual(try A1111Client.info(sdxl)["sd_model_name"] as? String, "sdxl")
        }
    }
}
