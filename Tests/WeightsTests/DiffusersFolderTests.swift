import Compute
import Foundation
import Weights
import XCTest

final class DiffusersFolderTests: XCTestCase {
    private var directory: TemporaryDirectory!

    override func setUpWithError() throws { directory = try TemporaryDirectory() }
    override func tearDown() { directory = nil }

    private let modelIndex = """
        {
          "_class_name": "StableDiffusionPipeline",
          "_diffusers_version": "0.30.0",
          "feature_extractor": [null, null],
          "requires_safety_checker": false,
          "safety_checker": [null, null],
          "scheduler": ["diffusers", "PNDMScheduler"],
          "text_encoder": ["transformers", "CLIPTextModel"],
          "tokenizer": ["transformers", "CLIPTokenizer"],
          "unet": ["diffusers", "UNet2DConditionModel"],
          "vae": ["diffusers", "AutoencoderKL"]
        }
        """

    private func one(_ value: Float) -> [String: Tensor] { ["w": Tensor(shape: [1], values: [value])] }

    /// A small pipeline folder: unet with full and fp16 weights, vae with only fp16, text encoder with
    /// `model.safetensors`, tokenizer and scheduler with configs only.
    private func makePipeline() throws -> URL {
        let root = directory.url
        try directory.write(modelIndex, to: "model_index.json")
        try directory.write(#"{"_class_name": "UNet2DConditionModel", "in_channels": 4}"#, to: "unet/config.json")
        try SafeTensorsWriter.write(one(1), to: directory.file("unet/diffusion_pytorch_model.safetensors"))
        try SafeTensorsWriter.write(
            one(2), precision: .float16, to: directory.file("unet/diffusion_pytorch_model.fp16.safetensors"))
        try directory.write(#"{"latent_channels": 4}"#, to: "vae/config.json")
        try SafeTensorsWriter.write(
            one(3), precision: .float16, to: directory.file("vae/diffusion_pytorch_model.fp16.safetensors"))
        try directory.write(#"{"hidden_size": 32}"#, to: "text_encoder/config.json")
        try SafeTensorsWriter.write(one(4), to: directory.file("text_encoder/model.safetensors"))
        try directory.write(#"{"model_max_length": 77}"#, to: "tokenizer/tokenizer_config.json")
        try directory.write("{}", to: "tokenizer/vocab.json")
        try directory.write(#"{"num_train_timesteps": 1000}"#, to: "scheduler/scheduler_config.json")
        return root
    }

    func testModelIndexComponents() throws {
        let pipeline = try DiffusersPipelineFolder(makePipeline())
        XCTAssertEqual(pipeline.pipelineClass, "StableDiffusionPipeline")
        XCTAssertEqual(pipeline.componentNames, ["scheduler", "text_encoder", "tokenizer", "unet", "vae"])
        XCTAssertEqual(pipeline.components["unet"], .init(library: "diffusers", className: "UNet2DConditionModel"))
        XCTAssertEqual(pipeline.components["text_encoder"]?.library, "transformers")

        let unet = try pipeline.component("unet")
        XCTAssertEqual(unet.name, "unet")
        XCTAssertEqual(unet.spec?.className, "UNet2DConditionModel")
        XCTAssertEqual(
            String(decoding: try unet.configData, as: UTF8.self), #"{"_class_name": "UNet2DConditionModel", "in_channels": 4}"#)

        let scheduler = try pipeline.component("scheduler")
        XCTAssertEqual(String(decoding: try scheduler.configData, as: UTF8.self), #"{"num_train_timesteps": 1000}"#)
        let tokenizer = try pipeline.component("tokenizer")
        XCTAssertEqual(try tokenizer.file("vocab.json").lastPathComponent, "vocab.json")
        assertWeightsError(["missing file in component 'tokenizer'", "merges.txt"]) { try tokenizer.file("merges.txt") }

        // Passing model_index.json itself opens its folder.
        let again = try DiffusersPipelineFolder(directory.file("model_index.json"))
        XCTAssertEqual(again.componentNames, pipeline.componentNames)
    }

    func testWeightResolutionOrder() throws {
        let pipeline = try DiffusersPipelineFolder(makePipeline())
        // unet has both: the full-precision file wins.
        XCTAssertEqual(try pipeline.component("unet").weights().tensor("w").scalars, [1])
        XCTAssertTrue(
            try pipeline.component("unet").weights().sourceDescription.hasSuffix("unet/diffusion_pytorch_model.safetensors"))
        // vae has only the fp16 variant.
        XCTAssertEqual(try pipeline.component("vae").weights().tensor("w").scalars, [3])
        // text encoders use transformers' name.
        XCTAssertEqual(try pipeline.component("text_encoder").weights().tensor("w").scalars, [4])
        // A tokenizer has no weights.
        assertWeightsError(["tokenizer", "no weights in a supported format", "diffusion_pytorch_model.safetensors"]) {
            try pipeline.component("tokenizer").weights()
        }
    }

    func testShardedComponent() throws {
        try directory.write(#"{"_class_name": "UNet2DConditionModel"}"#, to: "unet/config.json")
        try SafeTensorsWriter.write(["a": Tensor(shape: [1], values: [1])], to: directory.file("unet/part-1.safetensors"))
        try SafeTensorsWriter.write(["b": Tensor(shape: [1], values: [2])], to: directory.file("unet/part-2.safetensors"))
        try directory.write(
            #"{"weight_map": {"a": "part-1.safetensors", "b": "part-2.safetensors"}}"#,
            to: "unet/diffusion_pytorch_model.safetensors.index.json")
        let weights = try ComponentFolder(directory.file("unet")).weights()
        XCTAssertEqual(weights.names, ["a", "b"])
        XCTAssertEqual(try weights.tensor("b").scalars, [2])
    }

    func testComponentWithOnlyPickleWeightsIsRefused() throws {
        try directory.write(modelIndex, to: "model_index.json")
        try directory.write("{}", to: "unet/config.json")
        try directory.write([0x80, 0x02], to: "unet/diffusion_pytorch_model.bin")
        let pipeline = try DiffusersPipelineFolder(directory.url)
        assertWeightsError(["unet/diffusion_pytorch_model.bin", "pickle", "execute arbitrary code", "safetensors"]) {
            try pipeline.component("unet").weights()
        }
    }

    func testCheckpointFileIsRefused() throws {
        let url = try directory.write([0x80, 0x02, 0x7D], to: "v1-5-pruned.ckpt")
        assertWeightsError(["v1-5-pruned.ckpt", "pickle", "execute arbitrary code", "save_file"]) {
            try WeightsFile.open(url)
        }
        for name in ["model.pt", "model.PTH", "pytorch_model.bin"] {
            assertWeightsError([name, "pickle"]) { try WeightsFile.open(self.directory.file(name)) }
        }
    }

    func testWeightsFileOpenDispatch() throws {
        let root = try makePipeline()
        XCTAssertEqual(try WeightsFile.open(directory.file("unet/diffusion_pytorch_model.safetensors")).names, ["w"])
        XCTAssertEqual(try WeightsFile.open(directory.file("vae")).tensor("w").scalars, [3])
        assertWeightsError(["diffusers pipeline folder", "component"]) { try WeightsFile.open(root) }
        let gguf = try directory.write([0x47, 0x47, 0x55, 0x46], to: "model.gguf")
        assertWeightsError(["model.gguf", "unsupported format"]) { try WeightsFile.open(gguf) }
        assertWeightsError(["cannot open", "absent.txt"]) { try WeightsFile.open(self.directory.file("absent.txt")) }
    }

    func testMissingFolderConfigAndComponent() throws {
        assertWeightsError(["missing diffusers pipeline folder", "no-such-model"]) {
            try DiffusersPipelineFolder(self.directory.file("no-such-model"))
        }
        try directory.write("{}", to: "empty/readme.txt")
        assertWeightsError(["missing model_index.json", "empty/model_index.json"]) {
            try DiffusersPipelineFolder(self.directory.file("empty"))
        }

        let pipeline = try DiffusersPipelineFolder(makePipeline())
        assertWeightsError(["no component 'safety_checker'", "components: scheduler, text_encoder, tokenizer, unet, vae"]) {
            try pipeline.component("safety_checker")
        }
        try FileManager.default.removeItem(at: directory.file("vae/config.json"))
        assertWeightsError(["missing config file", "vae/config.json"]) { try pipeline.component("vae").configData }
        try FileManager.default.removeItem(at: directory.file("text_encoder"))
        assertWeightsError(["missing component folder", "text_encoder"]) { try pipeline.component("text_encoder") }
    }

    func testMalformedModelIndex() throws {
        try directory.write(#"{"unet": ["diffusers"]}"#, to: "a/model_index.json")
        assertWeightsError(["a/model_index.json", "component 'unet' must be [library, class]", #"["diffusers"]"#]) {
            try DiffusersPipelineFolder(self.directory.file("a"))
        }
        try directory.write("[1]", to: "b/model_index.json")
        assertWeightsError(["b/model_index.json", "must be a JSON object"]) {
            try DiffusersPipelineFolder(self.directory.file("b"))
        }
        try directory.write("{", to: "c/model_index.json")
        assertWeightsError(["c/model_index.json", "not valid JSON"]) { try DiffusersPipelineFolder(self.directory.file("c")) }
    }
}
