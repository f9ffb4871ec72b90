#!/usr/bin/env python3
"""Reference runs of diffusers 0.31's PNDM, Euler, Euler ancestral, Heun, LMS, KDPM2 (and ancestral), DPM-Solver
multistep and singlestep, DPMSolverSDEScheduler, DEIS and UniPC schedulers, for sower's (src/model/schedulers/pndm.c,
euler.c, kdpm2.c, dpm_multistep.c, dpm_singlestep.c, dpm_sde.c, deis.c, unipc.c, sigmas.c). LMS needs scipy
(pip install "scipy<1.15" in the reference environment), DPMSolverSDEScheduler torchsde (pip install torchsde==0.2.6).

Rerun (from the repository root, the reference environment of validate/make_scheduler_reference.py;
a few seconds; torch's linspace bits are those of its AVX2 kernel, forced here as sower's torch-cpu
kernel reproduces them):
    ATEN_CPU_CAPABILITY=avx2 /opt/refenv/bin/python validate/make_multistep_reference.py \\
        tests/data/scheduler_reference.json tests/data/multistep_scheduler_reference.json
Then: ./build/tests/test_scheduler tests/data/scheduler_reference.json tests/data/multistep_scheduler_reference.json

Every case feeds a scheduler_config.json text to CLASS.from_config (the swap users make), calls
set_timesteps(N) and records the timesteps (float), the sigmas where the class has them and
init_noise_sigma; then a chain through every step as StableDiffusionPipeline runs it, on the inputs of
scheduler_reference.json (randn (1, 4, 4, 4)): x = inputs[0].sample * init_noise_sigma; for each step i,
scaled = scale_model_input(x, t) (its bytes hashed in order), x = step(inputs[i % 3].model_output, t,
x) with Euler ancestral's, KDPM2 ancestral's and the DPM-Solver++ SDEs' draws (DPMSolverSDEScheduler's Brownian tree
noise sampler's output) replaced by inputs[i % 3].noise (counted). Recorded: sha256 of every
scaled input in order, of the final x, its values, and the number of draws.
"""
import hashlib
import json
import os
import sys

SD15 = ('{"_class_name": "PNDMScheduler", "_diffusers_version": "0.6.0", "beta_end": 0.012, '
        '"beta_schedule": "scaled_linear", "beta_start": 0.00085, "num_train_timesteps": 1000, '
        '"set_alpha_to_one": false, "skip_prk_steps": true, "steps_offset": 1, '
        '"trained_betas": null, "clip_sample": false}')
DDIM_SAVED_V = ('{"_class_name": "DDIMScheduler", "_diffusers_version": "0.31.0", "beta_end": 0.012, '
                '"beta_schedule": "scaled_linear", "beta_start": 0.00085, "clip_sample": false, '
                '"num_train_timesteps": 1000, "prediction_type": "v_prediction", "set_alpha_to_one": false, '
                '"steps_offset": 1, "timestep_spacing": "leading", "trained_betas": null}')
DPM_SAVED = ('{"_class_name": "DPMSolverMultistepScheduler", "_diffusers_version": "0.31.0", '
             '"algorithm_type": "dpmsolver++", "beta_end": 0.012, "beta_schedule": "scaled_linear", '
             '"beta_start": 0.00085, "euler_at_final": false, "final_sigmas_type": "zero", '
             '"lambda_min_clipped": -Infinity, "lower_order_final": true, "num_train_timesteps": 1000, '
             '"prediction_type": "epsilon", "solver_order": 2, "solver_type": "midpoint", "steps_offset": 1, '
             '"timestep_spacing": "linspace", "trained_betas": null, "use_karras_sigmas": false}')
LINEAR = '{"beta_schedule": "linear", "num_train_timesteps": 1000}'


def cases():
    c = []
    for n in (1, 2, 5, 20, 50):
        c.append((f"sd15_pndm_plms_n{n}", "PNDMScheduler", SD15, n))
    for n in (4, 10, 25):
        c.append((f"ddim_v_into_pndm_prk_n{n}", "PNDMScheduler", DDIM_SAVED_V, n))
    c.append(("pndm_linspace_prk_n12", "PNDMScheduler", '{"timestep_spacing": "linspace"}', 12))
    c.append(("pndm_trailing_plms_n10", "PNDMScheduler", '{"timestep_spacing": "trailing", "skip_prk_steps": true}', 10))
    for cls, tag in (("EulerDiscreteScheduler", "euler"), ("EulerAncestralDiscreteScheduler", "euler_a")):
        for n in (1, 7, 30):
            c.append((f"sd15_into_{tag}_n{n}", cls, SD15, n))
        c.append((f"ddim_v_into_{tag}_n15", cls, DDIM_SAVED_V, 15))
        c.append((f"{tag}_trailing_linear_n20", cls, '{"timestep_spacing": "trailing", "beta_schedule": "linear"}', 20))
        c.append((f"{tag}_cosine_linspace_n13", cls, '{"beta_schedule": "squaredcos_cap_v2"}', 13))
    for n in (7, 30):
        c.append((f"sd15_into_euler_karras_n{n}", "EulerDiscreteScheduler", SD15[:-1] + ', "use_karras_sigmas": true}', n))
    c.append(("euler_karras_bounds_sigma_min_final", "EulerDiscreteScheduler",
              '{"use_karras_sigmas": true, "sigma_min": 0.05, "sigma_max": 10.0, "final_sigmas_type": "sigma_min"}', 12))
    for n in (1, 2, 10, 20):
        c.append((f"sd15_into_dpm_n{n}", "DPMSolverMultistepScheduler", SD15, n))
    c.append(("dpm_saved_n25", "DPMSolverMultistepScheduler", DPM_SAVED, 25))
    for n in (10, 25):
        c.append((f"sd15_into_dpm_karras_n{n}", "DPMSolverMultistepScheduler", SD15[:-1] + ', "use_karras_sigmas": true}', n))
    c.append(("ddim_v_into_dpm_n12", "DPMSolverMultistepScheduler", DDIM_SAVED_V, 12))
    c.append(("dpm_heun_leading_n16", "DPMSolverMultistepScheduler",
              '{"solver_type": "heun", "timestep_spacing": "leading", "steps_offset": 1}', 16))
    c.append(("dpm_order1_trailing_n10", "DPMSolverMultistepScheduler",
              '{"solver_order": 1, "timestep_spacing": "trailing"}', 10))
    c.append(("dpm_plain_sigma_min_n18", "DPMSolverMultistepScheduler",
              '{"algorithm_type": "dpmsolver", "final_sigmas_type": "sigma_min", "lower_order_final": false}', 18))
    c.append(("dpm_euler_at_final_clipped_n20", "DPMSolverMultistepScheduler",
              '{"euler_at_final": true, "lambda_min_clipped": -5.1, "beta_schedule": "squaredcos_cap_v2"}', 20))
    c.append(("dpm_sample_prediction_n9", "DPMSolverMultistepScheduler", '{"prediction_type": "sample"}', 9))
    # DPM-Solver++ SDE (sower's dpm++2m-sde): the config names the algorithm, as from_config(config,
    # algorithm_type="sde-dpmsolver++") leaves it; every step draws noise
    SDE = ', "algorithm_type": "sde-dpmsolver++"}'
    for n in (1, 2, 10, 20):
        c.append((f"sd15_into_dpm_sde_n{n}", "DPMSolverMultistepScheduler", SD15[:-1] + SDE, n))
    c.append(("sd15_into_dpm_sde_karras_n25", "DPMSolverMultistepScheduler",
              SD15[:-1] + ', "use_karras_sigmas": true' + SDE, 25))
    c.append(("ddim_v_into_dpm_sde_n12", "DPMSolverMultistepScheduler", DDIM_SAVED_V[:-1] + SDE, 12))
    c.append(("dpm_sde_heun_leading_n16", "DPMSolverMultistepScheduler",
              '{"solver_type": "heun", "timestep_spacing": "leading", "steps_offset": 1' + SDE, 16))
    c.append(("dpm_sde_order1_trailing_n10", "DPMSolverMultistepScheduler",
              '{"solver_order": 1, "timestep_spacing": "trailing"' + SDE, 10))
    c.append(("dpm_sde_sigma_min_n18", "DPMSolverMultistepScheduler",
              '{"final_sigmas_type": "sigma_min", "lower_order_final": false' + SDE, 18))
    c.append(("dpm_sde_euler_at_final_clipped_n20", "DPMSolverMultistepScheduler",
              '{"euler_at_final": true, "lambda_min_clipped": -5.1, "beta_schedule": "squaredcos_cap_v2"' + SDE, 20))
    c.append(("dpm_sde_sample_prediction_n9", "DPMSolverMultistepScheduler", '{"prediction_type": "sample"' + SDE, 9))
    # zero terminal SNR: alphas_cumprod[-1] = 2**-24 in these classes, so the first sigma is 4096
    ZSNR = ('{"rescale_betas_zero_snr": true, "beta_schedule": "scaled_linear", "beta_start": 0.00085, '
            '"beta_end": 0.012, "timestep_spacing": "trailing", "prediction_type": "v_prediction"')
    for cls, tag in (("EulerDiscreteScheduler", "euler"), ("EulerAncestralDiscreteScheduler", "euler_a"),
                     ("DPMSolverMultistepScheduler", "dpm")):
        c.append((f"zsnr_{tag}_trailing_v_n10", cls, ZSNR + "}", 10))
    c.append(("zsnr_euler_karras_linspace_eps_n12", "EulerDiscreteScheduler",
              '{"rescale_betas_zero_snr": true, "use_karras_sigmas": true}', 12))
    c.append(("zsnr_dpm_sde_karras_n15", "DPMSolverMultistepScheduler",
              ZSNR + ', "use_karras_sigmas": true' + SDE, 15))
    c.append(("zsnr_dpm_leading_eps_n20", "DPMSolverMultistepScheduler",
              '{"rescale_betas_zero_snr": true, "timestep_spacing": "leading", "steps_offset": 1}', 20))
    # UniPC (predictor-corrector): SD 1.5's config swapped in, its options, the noise form, order 1, bh1
    U = "UniPCMultistepScheduler"
    for n in (1, 2, 3, 10, 20):
        c.append((f"sd15_into_unipc_n{n}", U, SD15, n))
    c.append(("sd15_into_unipc_karras_n15", U, SD15[:-1] + ', "use_karras_sigmas": true}', 15))
    c.append(("unipc_karras_sigma_min_n12", U, '{"use_karras_sigmas": true, "final_sigmas_type": "sigma_min"}', 12))
    c.append(("ddim_v_into_unipc_n12", U, DDIM_SAVED_V, 12))
    # (bh1, the noise form and a second-order last step are NaN/inf with a final sigma of zero: sower refuses
    # those; test_scheduler's refused list)
    SMIN = ', "final_sigmas_type": "sigma_min"}'
    c.append(("unipc_bh1_leading_n16", U, '{"solver_type": "bh1", "timestep_spacing": "leading", "steps_offset": 1' + SMIN, 16))
    c.append(("unipc_noise_form_trailing_n10", U, '{"predict_x0": false, "timestep_spacing": "trailing"' + SMIN, 10))
    c.append(("unipc_order1_n9", U, '{"solver_order": 1}', 9))
    c.append(("unipc_no_lower_order_final_n8", U, '{"lower_order_final": false, "beta_schedule": "squaredcos_cap_v2"' + SMIN, 8))
    c.append(("unipc_disable_corrector_n10", U, '{"disable_corrector": [0, 3, 8]}', 10))
    c.append(("unipc_sample_prediction_n9", U, '{"prediction_type": "sample", "solver_type": "midpoint"}', 9))
    c.append(("unipc_noise_form_v_n11", U, DDIM_SAVED_V[:-1] + ', "predict_x0": false' + SMIN, 11))
    c.append(("zsnr_unipc_trailing_v_n10", U, ZSNR + "}", 10))
    # Heun (two UNet calls per step but the last)
    H = "HeunDiscreteScheduler"
    for n in (1, 2, 10, 25):
        c.append((f"sd15_into_heun_n{n}", H, SD15, n))
    c.append(("sd15_into_heun_karras_n12", H, SD15[:-1] + ', "use_karras_sigmas": true}', 12))
    c.append(("ddim_v_into_heun_n8", H, DDIM_SAVED_V, 8))
    c.append(("heun_defaults_trailing_n7", H, '{"timestep_spacing": "trailing"}', 7))
    c.append(("heun_clip_sample_prediction_leading_n9", H,
              '{"prediction_type": "sample", "clip_sample": true, "clip_sample_range": 0.5, "timestep_spacing": "leading", '
              '"steps_offset": 1}', 9))
    c.append(("heun_clip_epsilon_cosine_n6", H, '{"clip_sample": true, "beta_schedule": "squaredcos_cap_v2"}', 6))
    # LMS (order 4; its coefficients are scipy's quad of a float32 integrand, its first 21-point Gauss-Kronrod sum)
    L = "LMSDiscreteScheduler"
    for n in (1, 2, 3, 4, 10, 30):
        c.append((f"sd15_into_lms_n{n}", L, SD15, n))
    c.append(("sd15_into_lms_karras_n12", L, SD15[:-1] + ', "use_karras_sigmas": true}', 12))
    c.append(("ddim_v_into_lms_n8", L, DDIM_SAVED_V, 8))
    c.append(("lms_defaults_trailing_n9", L, '{"timestep_spacing": "trailing"}', 9))
    c.append(("lms_sample_prediction_leading_n7", L, '{"prediction_type": "sample", "timestep_spacing": "leading", '
                                                    '"steps_offset": 1}', 7))
    # KDPM2 and its ancestral form (k-diffusion's DPM2 and DPM2 a: two UNet calls per step but the last)
    for cls, tag in (("KDPM2DiscreteScheduler", "kdpm2"), ("KDPM2AncestralDiscreteScheduler", "kdpm2_a")):
        for n in (1, 2, 3, 10, 20):
            c.append((f"sd15_into_{tag}_n{n}", cls, SD15, n))
        c.append((f"sd15_into_{tag}_karras_n12", cls, SD15[:-1] + ', "use_karras_sigmas": true}', 12))
        c.append((f"sd15_into_{tag}_karras_n25", cls, SD15[:-1] + ', "use_karras_sigmas": true}', 25))
        c.append((f"ddim_v_into_{tag}_n8", cls, DDIM_SAVED_V, 8))
        c.append((f"{tag}_defaults_trailing_n7", cls, '{"timestep_spacing": "trailing"}', 7))
        c.append((f"{tag}_linear_leading_n9", cls, '{"beta_schedule": "linear", "beta_start": 0.0001, "beta_end": 0.02, '
                                                  '"timestep_spacing": "leading", "steps_offset": 1}', 9))
        c.append((f"{tag}_cosine_karras_bounds_n6", cls, '{"beta_schedule": "squaredcos_cap_v2", "use_karras_sigmas": true, '
                                                        '"sigma_min": 0.1, "sigma_max": 20.0}', 6))
    # DPM-Solver singlestep (groups of a first- and a second-order step from the group's start) and its SDE form
    S = "DPMSolverSinglestepScheduler"
    for n in (1, 2, 5, 10, 25):
        c.append((f"sd15_into_dpm2s_n{n}", S, SD15, n))
    c.append(("sd15_into_dpm2s_karras_n12", S, SD15[:-1] + ', "use_karras_sigmas": true}', 12))
    c.append(("sd15_into_dpm2s_karras_n25", S, SD15[:-1] + ', "use_karras_sigmas": true}', 25))
    c.append(("dpm2s_sigma_min_even_n10", S, '{"final_sigmas_type": "sigma_min"}', 10))
    c.append(("dpm2s_sigma_min_odd_lower_final_n9", S, '{"final_sigmas_type": "sigma_min", "lower_order_final": true}', 9))
    c.append(("dpm2s_plain_heun_sigma_min_n8", S, '{"algorithm_type": "dpmsolver", "solver_type": "heun", '
                                                  '"final_sigmas_type": "sigma_min", "beta_schedule": "scaled_linear"}', 8))
    c.append(("dpm2s_heun_cosine_n11", S, '{"solver_type": "heun", "beta_schedule": "squaredcos_cap_v2"}', 11))
    c.append(("dpm2s_order1_n7", S, '{"solver_order": 1}', 7))
    c.append(("ddim_v_into_dpm2s_n12", S, DDIM_SAVED_V, 12))
    c.append(("dpm2s_sample_prediction_clipped_n14", S, '{"prediction_type": "sample", "lambda_min_clipped": -5.1}', 14))
    c.append(("sd15_into_dpm2s_sde_n10", S, SD15[:-1] + ', "algorithm_type": "sde-dpmsolver++"}', 10))
    c.append(("sd15_into_dpm2s_sde_karras_n13", S, SD15[:-1] + ', "algorithm_type": "sde-dpmsolver++", '
                                                   '"use_karras_sigmas": true}', 13))
    c.append(("dpm2s_sde_heun_v_n9", S, '{"algorithm_type": "sde-dpmsolver++", "solver_type": "heun", '
                                        '"prediction_type": "v_prediction"}', 9))
    c.append(("dpm2s_sde_order1_sigma_min_n6", S, '{"algorithm_type": "sde-dpmsolver++", "solver_order": 1, '
                                                  '"final_sigmas_type": "sigma_min"}', 6))
    # DEIS (log-rho multistep; its second order's logs are np.log of float32 tensors: within a relative 1e-5)
    D = "DEISMultistepScheduler"
    for n in (1, 2, 5, 14, 15, 30):
        c.append((f"sd15_into_deis_n{n}", D, SD15, n))
    c.append(("sd15_into_deis_karras_n12", D, SD15[:-1] + ', "use_karras_sigmas": true}', 12))
    c.append(("sd15_into_deis_karras_n20", D, SD15[:-1] + ', "use_karras_sigmas": true}', 20))
    c.append(("ddim_v_into_deis_n10", D, DDIM_SAVED_V, 10))
    c.append(("deis_order1_trailing_n9", D, '{"solver_order": 1, "timestep_spacing": "trailing"}', 9))
    c.append(("deis_from_dpm_saved_n8", D, DPM_SAVED, 8))
    c.append(("deis_sample_prediction_no_lower_final_n6", D, '{"prediction_type": "sample", "lower_order_final": false, '
                                                            '"beta_schedule": "squaredcos_cap_v2"}', 6))
    # the third order: DPM-Solver multistep and singlestep (ODE forms: diffusers has no third-order SDE update), DEIS
    c.append(("dpm_order3_saved_n5", "DPMSolverMultistepScheduler", DPM_SAVED[:-1] + ', "solver_order": 3}', 5))
    for n in (10, 20):
        c.append((f"sd15_into_dpm_order3_n{n}", "DPMSolverMultistepScheduler", SD15[:-1] + ', "solver_order": 3}', n))
    c.append(("sd15_into_dpm_order3_karras_n25", "DPMSolverMultistepScheduler",
              SD15[:-1] + ', "solver_order": 3, "use_karras_sigmas": true}', 25))
    c.append(("dpm_order3_plain_sigma_min_no_lower_final_n8", "DPMSolverMultistepScheduler",
              '{"solver_order": 3, "algorithm_type": "dpmsolver", "final_sigmas_type": "sigma_min", '
              '"lower_order_final": false}', 8))
    c.append(("dpm_order3_v_trailing_n12", "DPMSolverMultistepScheduler",
              DDIM_SAVED_V[:-1] + ', "solver_order": 3, "timestep_spacing": "trailing"}', 12))
    for n in (3, 7, 10, 12):
        c.append((f"sd15_into_dpm2s_order3_n{n}", S, SD15[:-1] + ', "solver_order": 3}', n))
    c.append(("dpm2s_order3_heun_n11", S, '{"solver_order": 3, "solver_type": "heun", "final_sigmas_type": "sigma_min"}', 11))
    c.append(("dpm2s_order3_heun_n10", S, '{"solver_order": 3, "solver_type": "heun"}', 10))
    c.append(("dpm2s_order3_plain_heun_sigma_min_n9", S, '{"solver_order": 3, "algorithm_type": "dpmsolver", '
                                                         '"solver_type": "heun", "final_sigmas_type": "sigma_min"}', 9))
    c.append(("dpm2s_order3_sigma_min_even_groups_n9", S, '{"solver_order": 3, "final_sigmas_type": "sigma_min"}', 9))
    c.append(("dpm2s_order3_plain_sigma_min_n8", S, '{"solver_order": 3, "algorithm_type": "dpmsolver", '
                                                    '"final_sigmas_type": "sigma_min", "beta_schedule": "scaled_linear"}', 8))
    c.append(("sd15_into_dpm2s_order3_karras_n16", S, SD15[:-1] + ', "solver_order": 3, "use_karras_sigmas": true}', 16))
    for n in (3, 10, 14, 20):
        c.append((f"sd15_into_deis_order3_n{n}", D, SD15[:-1] + ', "solver_order": 3}', n))
    c.append(("sd15_into_deis_order3_karras_n18", D, SD15[:-1] + ', "solver_order": 3, "use_karras_sigmas": true}', 18))
    c.append(("deis_order3_no_lower_final_v_n9", D, DDIM_SAVED_V[:-1] + ', "solver_order": 3, "lower_order_final": false}', 9))
    # UniPC's third order (its corrector solves a 3x3 system, its predictor a 2x2 one, through LAPACK: within 1e-5)
    U3 = "UniPCMultistepScheduler"
    for n in (3, 4, 10, 20):
        c.append((f"sd15_into_unipc_order3_n{n}", U3, SD15[:-1] + ', "solver_order": 3}', n))
    c.append(("sd15_into_unipc_order3_karras_n16", U3, SD15[:-1] + ', "solver_order": 3, "use_karras_sigmas": true}', 16))
    c.append(("unipc_order3_bh1_sigma_min_n12", U3, '{"solver_order": 3, "solver_type": "bh1", "final_sigmas_type": '
                                                    '"sigma_min"}', 12))
    c.append(("unipc_order3_noise_form_v_sigma_min_n9", U3, DDIM_SAVED_V[:-1] + ', "solver_order": 3, "predict_x0": false, '
                                                           '"final_sigmas_type": "sigma_min"}', 9))
    c.append(("unipc_order3_disable_corrector_n11", U3, '{"solver_order": 3, "disable_corrector": [2, 5]}', 11))
    c.append(("unipc_order3_no_lower_final_sigma_min_n8", U3, '{"solver_order": 3, "lower_order_final": false, '
                                                              '"final_sigmas_type": "sigma_min"}', 8))
    # DPMSolverSDEScheduler (DPM++ SDE: two calls per step but the last, noise at every call but the last, from a
    # Brownian tree that the chain replaces with the inputs' noise as it replaces the other classes' draws; the tree
    # itself: validate/make_brownian_reference.py)
    E = "DPMSolverSDEScheduler"
    for n in (1, 2, 5, 10, 25):
        c.append((f"sd15_into_dpm_sde_tree_n{n}", E, SD15, n))
    c.append(("sd15_into_dpm_sde_tree_karras_n12", E, SD15[:-1] + ', "use_karras_sigmas": true}', 12))
    c.append(("sd15_into_dpm_sde_tree_karras_n25", E, SD15[:-1] + ', "use_karras_sigmas": true}', 25))
    c.append(("ddim_v_into_dpm_sde_tree_n12", E, DDIM_SAVED_V, 12))
    c.append(("dpm_sde_tree_trailing_n10", E, '{"timestep_spacing": "trailing", "noise_sampler_seed": 5}', 10))
    c.append(("dpm_sde_tree_linear_leading_n9", E, '{"beta_schedule": "linear", "beta_start": 0.0001, "beta_end": 0.02, '
                                                 '"timestep_spacing": "leading", "steps_offset": 1}', 9))
    c.append(("dpm_sde_tree_cosine_karras_v_n7", E, '{"beta_schedule": "squaredcos_cap_v2", "use_karras_sigmas": true, '
                                                  '"prediction_type": "v_prediction"}', 7))
    # The exponential and beta sigma schedules (_convert_to_exponential: torch.linspace of the logs, exp'd in float32;
    # _convert_to_beta: scipy.stats.beta.ppf(., 0.6, 0.6)), in the classes whose set_timesteps runs them in 0.31
    for key, tag in (("use_exponential_sigmas", "exp"), ("use_beta_sigmas", "beta")):
        for cls, ctag in (("EulerDiscreteScheduler", "euler"), ("HeunDiscreteScheduler", "heun"),
                          ("LMSDiscreteScheduler", "lms"), ("KDPM2DiscreteScheduler", "kdpm2"),
                          ("KDPM2AncestralDiscreteScheduler", "kdpm2_a"), ("DPMSolverSDEScheduler", "dpm_sde_tree")):
            for n in (1, 2, 9, 25):
                c.append((f"sd15_into_{ctag}_{tag}_n{n}", cls, SD15[:-1] + f', "{key}": true}}', n))
            c.append((f"ddim_v_into_{ctag}_{tag}_n12", cls, DDIM_SAVED_V[:-1] + f', "{key}": true}}', 12))
        c.append((f"euler_{tag}_bounds_sigma_min_final_n11", "EulerDiscreteScheduler",
                  f'{{"{key}": true, "sigma_min": 0.05, "sigma_max": 10.0, "final_sigmas_type": "sigma_min"}}', 11))
        c.append((f"kdpm2_{tag}_cosine_bounds_n6", "KDPM2DiscreteScheduler",
                  f'{{"beta_schedule": "squaredcos_cap_v2", "{key}": true, "sigma_min": 0.1, "sigma_max": 20.0}}', 6))
        c.append((f"euler_{tag}_trailing_linear_n40", "EulerDiscreteScheduler",
                  f'{{"{key}": true, "timestep_spacing": "trailing", "beta_schedule": "linear"}}', 40))
    return c


def floats(t):
    """A float32 tensor's values, NaN (a slot diffusers never reads) as null."""
    return [None if v != v else float(v) for v in t]


def sha(t):
    return hashlib.sha256(t.detach().numpy().astype("<f4").tobytes()).hexdigest()


def run(torch, diffusers, inputs, name, cls_name, text, n):
    import diffusers.schedulers.scheduling_dpmsolver_multistep as dpm
    import diffusers.schedulers.scheduling_euler_ancestral_discrete as euler_a
    import diffusers.schedulers.scheduling_dpmsolver_singlestep as dpm_single
    import diffusers.schedulers.scheduling_k_dpm_2_ancestral_discrete as kdpm2_a
    import diffusers.schedulers.scheduling_dpmsolver_sde as dpm_sde
    s = getattr(diffusers, cls_name).from_config(json.loads(text))
    s.set_timesteps(n)
    draws = [0]
    noise_now = [None]

    def fake_randn(shape, generator=None, device=None, dtype=None, layout=None):
        draws[0] += 1
        return noise_now[0].reshape(shape).clone()

    euler_a.randn_tensor = fake_randn
    dpm.randn_tensor = fake_randn
    kdpm2_a.randn_tensor = fake_randn
    dpm_single.randn_tensor = fake_randn

    class FakeTreeSampler:  # DPMSolverSDEScheduler's BrownianTreeNoiseSampler: the inputs' noise, counted
        def __init__(self, x, *args, **kwargs):
            self.shape = x.shape

        def __call__(self, sigma, sigma_next):
            return fake_randn(self.shape)

    dpm_sde.BrownianTreeNoiseSampler = FakeTreeSampler
    x = inputs[0]["sample"] * s.init_noise_sigma
    scaled = hashlib.sha256()
    for i, t in enumerate(s.timesteps):
        scaled.update(s.scale_model_input(x, t).numpy().astype("<f4").tobytes())
        noise_now[0] = inputs[i % 3]["noise"]
        x = s.step(inputs[i % 3]["model_output"], t, x).prev_sample
    case = {"name": name, "class": cls_name, "config": text, "num_inference_steps": n,
            "timesteps": [float(t) for t in s.timesteps],
            "init_noise_sigma": float(s.init_noise_sigma),
            "chain": {"noise_draws": draws[0], "scaled_sha256": scaled.hexdigest(), "final_sha256": sha(x),
                      "final": [float(v) for v in x.flatten()]}}
    if hasattr(s, "sigmas") and cls_name != "PNDMScheduler":
        case["sigmas"] = floats(s.sigmas)
    for table in ("sigmas_interpol", "sigmas_up", "sigmas_down"):  # KDPM2's
        if hasattr(s, table):
            case[table] = floats(getattr(s, table))
    return case


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    import diffusers
    import numpy
    import torch
    torch.set_num_threads(1)
    ref = json.load(open(sys.argv[1]))
    inputs = [{k: torch.tensor(d[k], dtype=torch.float32).reshape(d["shape"]) for k in ("model_output", "sample", "noise")}
              for d in ref["inputs"][:3]]
    doc = {"format": "sower-multistep-scheduler-reference", "version": 1,
           "made_by": "validate/make_multistep_reference.py",
           "versions": {"diffusers": diffusers.__version__, "torch": torch.__version__, "numpy": numpy.__version__},
           "cpu_capability": os.environ.get("ATEN_CPU_CAPABILITY", "(torch default)"),
           "inputs_from": "scheduler_reference.json inputs 0..2",
           "cases": [run(torch, diffusers, inputs, *c) for c in cases()]}
    with open(sys.argv[2], "w") as f:
        json.dump(doc, f, indent=None, separators=(",", ":"))
        f.write("\n")
    print(f"wrote {len(doc['cases'])} cases to {sys.argv[2]}")


if __name__ == "__main__":
    main()
