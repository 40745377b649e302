/// The diffusers component configs of the reference models each single-file family is a fine-tune of, used
/// when a checkpoint carries no configs (every community checkpoint): Stable Diffusion 1.5
/// (`stable-diffusion-v1-5/stable-diffusion-v1-5`), 2.1 (`stabilityai/stable-diffusion-2-1`, the 768-pixel
/// v-prediction model) and SDXL base 1.0 (`stabilityai/stable-diffusion-xl-base-1.0`).
///
/// The numbers are those repositories' `config.json` files (diffusers' own defaults written out where
/// the file relies on them, e.g. the VAE `scaling_factor`); tokenizer configs are reduced to the fields
/// that matter (`pad_token` differs: SD 2.x and SDXL's second tokenizer pad with "!").
public enum StandardConfigs {
    /// The component's config JSON for a family, or nil when the family has no such component.
    public static func json(for component: String, family: SingleFileCheckpoint.Family) -> String? {
        switch family {
        case .sd1: return sd15[component]
        case .sd2: return sd21[component]
        case .sdxl: return sdxlBase[component]
        }
    }

    /// A name for messages ("standard Stable Diffusion 1.5 configuration").
    public static func modelName(_ family: SingleFileCheckpoint.Family) -> String {
        switch family {
        case .sd1: return "Stable Diffusion 1.5"
        case .sd2: return "Stable Diffusion 2.1 (768-v)"
        case .sdxl: return "Stable Diffusion XL base 1.0"
        }
    }

    static let scaledLinearBetas = """
        "beta_end": 0.012,
          "beta_schedule": "scaled_linear",
          "beta_start": 0.00085,
          "num_train_timesteps": 1000
        """

    static func tokenizer(pad: String) -> String {
        """
        {
          "add_prefix_space": false,
          "bos_token": "<|startoftext|>",
          "do_lower_case": true,
          "eos_token": "<|endoftext|>",
          "errors": "replace",
          "model_max_length": 77,
          "pad_token": "\(pad)",
          "tokenizer_class": "CLIPTokenizer",
          "unk_token": "<|endoftext|>"
        }
        """
    }

    static func vae(sampleSize: Int, scalingFactor: String, forceUpcast: Bool) -> String {
        """
        {
          "_class_name": "AutoencoderKL",
          "act_fn": "silu",
          "block_out_channels": [128, 256, 512, 512],
          "down_block_types": ["DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D"],
          "force_upcast": \(forceUpcast),
          "in_channels": 3,
          "latent_channels": 4,
          "layers_per_block": 2,
          "norm_num_groups": 32,
          "out_channels": 3,
          "sample_size": \(sampleSize),
          "scaling_factor": \(scalingFactor),
          "up_block_types": ["UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D"]
        }
        """
    }

    /// OpenAI CLIP ViT-L/14's text tower (SD 1.x, SDXL's first encoder). `eos_token_id` 2 is what the
    /// original configs say (transformers then pools at the highest token id, which is the end token).
    static func clipViTL(projectionDim: Int) -> String {
        """
        {
          "architectures": ["CLIPTextModel"],
          "attention_dropout": 0.0,
          "bos_token_id": 0,
          "dropout": 0.0,
          "eos_token_id": 2,
          "hidden_act": "quick_gelu",
          "hidden_size": 768,
          "initializer_factor": 1.0,
          "initializer_range": 0.02,
          "intermediate_size": 3072,
          "layer_norm_eps": 1e-05,
          "max_position_embeddings": 77,
          "model_type": "clip_text_model",
          "num_attention_heads": 12,
          "num_hidden_layers": 12,
          "pad_token_id": 1,
          "projection_dim": \(projectionDim),
          "torch_dtype": "float32",
          "vocab_size": 49408
        }
        """
    }

    static let sd15: [String: String] = [
        "unet": """
        {
          "_class_name": "UNet2DConditionModel",
          "act_fn": "silu",
          "attention_head_dim": 8,
          "block_out_channels": [320, 640, 1280, 1280],
          "center_input_sample": false,
          "cross_attention_dim": 768,
          "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
          "downsample_padding": 1,
          "flip_sin_to_cos": true,
          "freq_shift": 0,
          "in_channels": 4,
          "layers_per_block": 2,
          "mid_block_scale_factor": 1,
          "norm_eps": 1e-05,
          "norm_num_groups": 32,
          "out_channels": 4,
          "sample_size": 64,
          "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"]
        }
        """,
        "vae": vae(sampleSize: 512, scalingFactor: "0.18215", forceUpcast: true),
        "text_encoder": clipViTL(projectionDim: 768),
        "tokenizer": tokenizer(pad: "<|endoftext|>"),
        "scheduler": """
        {
          "_class_name": "PNDMScheduler",
          \(scaledLinearBetas),
          "clip_sample": false,
          "prediction_type": "epsilon",
          "set_alpha_to_one": false,
          "skip_prk_steps": true,
          "steps_offset": 1,
          "timestep_spacing": "leading",
          "trained_betas": null
        }
        """,
    ]

    static let sd21: [String: String] = [
        "unet": """
        {
          "_class_name": "UNet2DConditionModel",
          "act_fn": "silu",
          "attention_head_dim": [5, 10, 20, 20],
          "block_out_channels": [320, 640, 1280, 1280],
          "center_input_sample": false,
          "cross_attention_dim": 1024,
          "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
          "downsample_padding": 1,
          "dual_cross_attention": false,
          "flip_sin_to_cos": true,
          "freq_shift": 0,
          "in_channels": 4,
          "layers_per_block": 2,
          "mid_block_scale_factor": 1,
          "norm_eps": 1e-05,
          "norm_num_groups": 32,
          "num_class_embeds": null,
          "only_cross_attention": false,
          "out_channels": 4,
          "sample_size": 96,
          "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
          "upcast_attention": true,
          "use_linear_projection": true
        }
        """,
        "vae": vae(sampleSize: 768, scalingFactor: "0.18215", forceUpcast: true),
        // OpenCLIP ViT-H/14's text tower minus its last layer (SD 2.x conditions on the penultimate layer).
        "text_encoder": """
        {
          "architectures": ["CLIPTextModel"],
          "attention_dropout": 0.0,
          "bos_token_id": 0,
          "dropout": 0.0,
          "eos_token_id": 2,
          "hidden_act": "gelu",
          "hidden_size": 1024,
          "initializer_factor": 1.0,
          "initializer_range": 0.02,
          "intermediate_size": 4096,
          "layer_norm_eps": 1e-05,
          "max_position_embeddings": 77,
          "model_type": "clip_text_model",
          "num_attention_heads": 16,
          "num_hidden_layers": 23,
          "pad_token_id": 1,
          "projection_dim": 512,
          "torch_dtype": "float32",
          "vocab_size": 49408
        }
        """,
        "tokenizer": tokenizer(pad: "!"),
        "scheduler": """
        {
          "_class_name": "DDIMScheduler",
          \(scaledLinearBetas),
          "clip_sample": false,
          "prediction_type": "v_prediction",
          "set_alpha_to_one": false,
          "skip_prk_steps": true,
          "steps_offset": 1,
          "timestep_spacing": "leading",
          "trained_betas": null
        }
        """,
    ]

    static let sdxlBase: [String: String] = [
        "unet": """
        {
          "_class_name": "UNet2DConditionModel",
          "act_fn": "silu",
          "addition_embed_type": "text_time",
          "addition_embed_type_num_heads": 64,
          "addition_time_embed_dim": 256,
          "attention_head_dim": [5, 10, 20],
          "block_out_channels": [320, 640, 1280],
          "center_input_sample": false,
          "class_embed_type": null,
          "class_embeddings_concat": false,
          "conv_in_kernel": 3,
          "conv_out_kernel": 3,
          "cross_attention_dim": 2048,
          "cross_attention_norm": null,
          "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
          "downsample_padding": 1,
          "dual_cross_attention": false,
          "encoder_hid_dim": null,
          "encoder_hid_dim_type": null,
          "flip_sin_to_cos": true,
          "freq_shift": 0,
          "in_channels": 4,
          "layers_per_block": 2,
          "mid_block_only_cross_attention": null,
          "mid_block_scale_factor": 1,
          "mid_block_type": "UNetMidBlock2DCrossAttn",
          "norm_eps": 1e-05,
          "norm_num_groups": 32,
          "num_attention_heads": null,
          "num_class_embeds": null,
          "only_cross_attention": false,
          "out_channels": 4,
          "projection_class_embeddings_input_dim": 2816,
          "resnet_out_scale_factor": 1.0,
          "resnet_skip_time_act": false,
          "resnet_time_scale_shift": "default",
          "sample_size": 128,
          "time_cond_proj_dim": null,
          "time_embedding_act_fn": null,
          "time_embedding_dim": null,
          "time_embedding_type": "positional",
          "timestep_post_act": null,
          "transformer_layers_per_block": [1, 2, 10],
          "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
          "upcast_attention": null,
          "use_linear_projection": true
        }
        """,
        "vae": vae(sampleSize: 1024, scalingFactor: "0.13025", forceUpcast: true),
        "text_encoder": clipViTL(projectionDim: 768),
        // OpenCLIP ViT-bigG/14's text tower with its projection (the pooled embedding SDXL conditions on).
        "text_encoder_2": """
        {
          "architectures": ["CLIPTextModelWithProjection"],
          "attention_dropout": 0.0,
          "bos_token_id": 0,
          "dropout": 0.0,
          "eos_token_id": 2,
          "hidden_act": "gelu",
          "hidden_size": 1280,
          "initializer_factor": 1.0,
          "initializer_range": 0.02,
          "intermediate_size": 5120,
          "layer_norm_eps": 1e-05,
          "max_position_embeddings": 77,
          "model_type": "clip_text_model",
          "num_attention_heads": 20,
          "num_hidden_layers": 32,
          "pad_token_id": 1,
          "projection_dim": 1280,
          "torch_dtype": "float32",
          "vocab_size": 49408
        }
        """,
        "tokenizer": tokenizer(pad: "<|endoftext|>"),
        "tokenizer_2": tokenizer(pad: "!"),
        "scheduler": """
        {
          "_class_name": "EulerDiscreteScheduler",
          \(scaledLinearBetas),
          "clip_sample": false,
          "interpolation_type": "linear",
          "prediction_type": "epsilon",
          "sample_max_value": 1.0,
          "set_alpha_to_one": false,
          "skip_prk_steps": true,
          "steps_offset": 1,
          "timestep_spacing": "leading",
          "trained_betas": null,
          "use_karras_sigmas": false
        }
        """,
    ]
}
