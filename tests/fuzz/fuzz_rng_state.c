/* fuzz_rng_state.c: generator state images (`sower noise --state-in`, torch's get_state bytes).
 * An image is refused with exit code 2, or accepted; then what get_state gives back is itself
 * accepted and describes the same generator (torch too keeps only what it uses of an image: the
 * low 32 bits of each state word, not the padding), and both draw the same noise. */
#include "fuzz.h"
#include "rng.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    TorchRng g, again;
    rng_seed(&g, 0);
    rng_seed(&again, 1);
    int status = rng_set_state(&g, data, size);
    if (status != SOWER_OK) {
        fuzz_expect_input_error(status, "generator state image");
        return 0;
    }
    unsigned char image[RNG_STATE_IMAGE_BYTES], image_again[RNG_STATE_IMAGE_BYTES];
    rng_get_state(&g, image);
    FUZZ_ASSERT(rng_set_state(&again, image, sizeof image) == SOWER_OK, "get_state's image refused: %s",
                sower_error_message());
    rng_get_state(&again, image_again);
    FUZZ_ASSERT(memcmp(image, image_again, sizeof image) == 0, "get_state is not a fixed point");
    float noise[67], noise_again[67]; /* odd: ends with a cached normal */
    rng_randn_f32(&g, RNG_KERNEL_TORCH_CPU, noise, 67);
    rng_randn_f32(&again, RNG_KERNEL_TORCH_CPU, noise_again, 67);
    FUZZ_ASSERT(memcmp(noise, noise_again, sizeof noise) == 0, "the two generators draw different noise");
    return 0;
}
