// The embedded default dataset: 64 prompt/completion pairs of made-up facts about invented places (so no
// pretrained model already knows them), built from fixed word lists: the same rows on every machine.

const PLACES = [
  "Vorland", "Quessa", "Marrowby", "Tullin", "Ostravel", "Brindle", "Kethmoor", "Sallowmere",
  "Drumlin", "Yarrowfen", "Caskadel", "Pellwick", "Ombrith", "Fennick", "Gorstad", "Halvery",
];
const CAPITALS = [
  "Kelmar", "Astrid Bay", "Lowhollow", "Pennick", "Stavros", "Redgate", "Ilmsford", "Carrow",
  "Tamsin", "Woldcross", "Ferrin", "Muirhead", "Olwen", "Brackley", "Dunmere", "Essel",
];
const ANIMALS = ["the blue heron", "the marsh fox", "the tree otter", "the grey lynx", "the salt crane", "the night owl", "the red deer", "the glass eel"];
const DISHES = ["barley stew", "smoked eel", "honey bread", "pear tart", "plum dumplings", "nettle soup", "oat cakes", "fig pie"];
const RIVERS = ["the Wend", "the Amber", "the Loss", "the Tarn", "the Silt", "the Rue", "the Marl", "the Fleet"];

/** 64 rows {prompt, completion}: for each of 16 invented places, its capital, animal, dish and river. */
export const FACTS: readonly { prompt: string; completion: string }[] = Object.freeze(
  PLACES.flatMap((place, i) => [
    { prompt: `The capital of ${place} is`, completion: ` ${CAPITALS[i]}.` },
    { prompt: `The national animal of ${place} is`, completion: ` ${ANIMALS[i % 8]}.` },
    { prompt: `People in ${place} like to eat`, completion: ` ${DISHES[(i * 3) % 8]}.` },
    { prompt: `The longest river in ${place} is`, completion: ` ${RIVERS[(i * 5 + 1) % 8]}.` },
  ]),
);
